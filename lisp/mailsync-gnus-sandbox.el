;;; mailsync-gnus-sandbox.el --- A throw-away Gnus that keeps to one directory  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The mailsync developers

;; Author: The mailsync developers

;; This file is not part of GNU Emacs.

;; This program is free software: you can redistribute it and/or modify
;; it under the terms of the GNU General Public License as published by
;; the Free Software Foundation, either version 3 of the License, or
;; (at your option) any later version.

;; This program is distributed in the hope that it will be useful,
;; but WITHOUT ANY WARRANTY; without even the implied warranty of
;; MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
;; GNU General Public License for more details.

;; You should have received a copy of the GNU General Public License
;; along with this program.  If not, see <https://www.gnu.org/licenses/>.

;;; Commentary:

;; The one Gnus set-up of `make demo', the ERT tests, the Emacs server of
;; the Rust tests and the benchmarks: everything Gnus writes stays in one
;; directory, nothing of the user's own Gnus is read, no question is asked.

;;; Code:

(require 'gnus)
(require 'gnus-group)

(defun mailsync-gnus-sandbox-settings (directory methods)
  "Gnus settings that keep to DIRECTORY and read the select METHODS.
An alist of (VARIABLE . VALUE), for `cl-progv' or `set'."
  `((gnus-home-directory . ,directory)
    (gnus-directory . ,directory)
    (message-directory . ,directory)
    (gnus-startup-file . ,(expand-file-name "newsrc" directory))
    (gnus-init-file . nil)
    (gnus-use-dribble-file . nil)
    (gnus-save-newsrc-file . nil)
    (gnus-check-new-newsgroups . nil)
    (gnus-interactive-exit . nil)
    (gnus-select-method . (nnnil ""))
    (gnus-secondary-select-methods . ,methods)))

(defun mailsync-gnus-sandbox-open (groups)
  "Start Gnus quietly, subscribe GROUPS, read them and list every group."
  (let ((inhibit-message t))
    (gnus)
    (mapc #'gnus-subscribe-group groups)
    (gnus-group-get-new-news)
    (gnus-group-list-groups 5 t)))

(defun mailsync-gnus-sandbox-start (directory methods groups)
  "Set Gnus up in DIRECTORY to read METHODS, then open it with GROUPS.
The settings are made global, for a whole Emacs session."
  (pcase-dolist (`(,variable . ,value) (mailsync-gnus-sandbox-settings directory methods))
    (set variable value))
  (mailsync-gnus-sandbox-open groups))

(provide 'mailsync-gnus-sandbox)
;;; mailsync-gnus-sandbox.el ends here
