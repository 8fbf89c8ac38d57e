;;; mailsync-demo.el --- Gnus over a demo maildir with mail arriving live  -*- lexical-binding: t; -*-

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

;; Used by `make demo' (scripts/demo.sh): starts Gnus over a temporary
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
(require 'mailsync-gnus-sandbox)

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
directory, one link per folder), both made by scripts/demo.sh."
  (let* ((directory (file-name-as-directory (expand-file-name directory)))
         (maildir (expand-file-name "Maildir" directory))
         (groups (expand-file-name "gnus" directory)))
    (setq mailsync-maildirs `((,maildir :server "nnmaildir+demo" :layout maildir++))
          mailsync-delay 0.1)
    (mailsync-gnus-sandbox-start
     directory `((nnmaildir "demo" (directory ,groups)))
     (mapcar (lambda (folder) (concat "nnmaildir+demo:" folder))
             (mailsync-demo--folders maildir)))
    (mailsync-mode 1)
    (add-hook 'kill-emacs-hook #'mailsync-stop)
    (message "mailsync demo: mail arrives every few seconds; watch the counts.  C-x C-c quits.")))

(defun mailsync-demo-command-line ()
  "Run `mailsync-demo' on the directory named next on the command line.
For `emacs -f mailsync-demo-command-line DIR': the name is data, never
pasted into Lisp code."
  (mailsync-demo (pop command-line-args-left)))

(provide 'mailsync-demo)
;;; mailsync-demo.el ends here
