;;; mailsync-demo.el --- Gnus over a demo maildir with mail arriving live  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The mailsync developers

;; Author: The mailsync developers
;; URL: https://pypi.org/project/rpatterson.mailsync/

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

;; Used by `make demo' (tests/demo.sh): starts Gnus over a temporary
;; Maildir++ tree, as OfflineIMAP or mbsync would leave it, read through
;; an nnmaildir server whose group directories link into that tree.
;; mailsync watches the Maildir++ tree; a deliverer outside Emacs drops
;; mail into it, and the unread counts in `*Group*' rise by themselves.
;; Everything lives in the directory the caller names: no network, no
;; questions, nothing of the user's own Gnus setup.

;;; Code:

(require 'cl-lib)
(require 'gnus)
(require 'gnus-group)
(require 'mailsync-gnus)

(defun mailsync-demo--folders (maildir)
  "The folders of the Maildir++ tree MAILDIR: INBOX and its dot-folders."
  (cons "INBOX"
        (mapcar (lambda (dir) (substring dir 1))
                (cl-remove ".nnmaildir" (directory-files maildir nil "\\`\\.[^.]")
                           :test #'equal))))

;;;###autoload
(defun mailsync-demo (directory)
  "Start Gnus over the demo store in DIRECTORY and let mailsync watch it.
DIRECTORY holds `Maildir' (the Maildir++ tree) and `gnus' (nnmaildir's
directory, one link per folder), both made by tests/demo.sh."
  (let* ((directory (file-name-as-directory (expand-file-name directory)))
         (maildir (expand-file-name "Maildir" directory))
         (groups (expand-file-name "gnus" directory)))
    (setq gnus-home-directory directory
          gnus-directory directory
          message-directory directory
          gnus-startup-file (expand-file-name "newsrc" directory)
          gnus-init-file nil
          gnus-use-dribble-file nil
          gnus-save-newsrc-file nil
          gnus-check-new-newsgroups nil
          gnus-interactive-exit nil
          gnus-select-method '(nnnil "")
          gnus-secondary-select-methods
          `((nnmaildir "demo" (directory ,groups)))
          mailsync-maildirs
          `((,maildir :server "nnmaildir+demo" :layout maildir++))
          mailsync-delay 0.1)
    (gnus)
    (dolist (folder (mailsync-demo--folders maildir))
      (gnus-subscribe-group (concat "nnmaildir+demo:" folder)))
    (gnus-group-get-new-news)
    (gnus-group-list-groups 5 t)
    (mailsync-mode 1)
    (add-hook 'kill-emacs-hook #'mailsync-stop)
    (message "mailsync demo: mail arrives every few seconds; watch the counts.  C-x C-c quits.")))

(provide 'mailsync-demo)
;;; mailsync-demo.el ends here
