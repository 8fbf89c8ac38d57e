;;; check-server.el --- A Gnus with an Emacs server, for emacsclient checks  -*- lexical-binding: t; -*-

;;; Commentary:

;; Started by the Rust tests (tests/check_emacs.rs) as
;;   emacs --batch -Q -L REPO -l tests/check-server.el DIR
;; Gnus runs over the nnmaildir store DIR/mail (server "test"), every folder
;; subscribed; an Emacs server listens on DIR/socket/server.  Every group
;; checked (`mailsync-after-check-functions') is appended to DIR/checked,
;; one per line, as raw bytes.  DIR/ready appears when all is up.

;;; Code:

(require 'gnus)
(require 'gnus-group)
(require 'server)
(require 'mailsync-gnus)
(require 'mailsync-gnus-sandbox)

(let* ((dir (file-name-as-directory (expand-file-name (pop command-line-args-left))))
       (mail (expand-file-name "mail" dir)))
  (setq default-directory dir)
  (mailsync-gnus-sandbox-start dir `((nnmaildir "test" (directory ,mail)))
                               (mapcar (lambda (folder) (concat "nnmaildir+test:" folder))
                                       (directory-files mail nil "\\`[^.]")))
  (add-hook 'mailsync-after-check-functions
              (lambda (groups)
                (let ((coding-system-for-write 'utf-8-unix))
                  (dolist (group groups)
                    (write-region (concat group "\n") nil (expand-file-name "checked" dir)
                                  t 'silent)))))
  (setq server-socket-dir (expand-file-name "socket" dir)
        server-name "server")
  (server-start)
  (write-region "" nil (expand-file-name "ready" dir) nil 'silent)
  (while t
    (sleep-for 0.05)))

;;; check-server.el ends here
