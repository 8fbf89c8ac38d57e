;;; build-module.el --- M-x mailsync-build-module, then use the module  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by the ERT test `mailsync-test-build-module-command' in a child Emacs:
;;   emacs --batch -Q -L TREE -l tests/build-module.el MAILDIR
;; TREE is a copy of the sources without the module.  Builds it with the
;; command a user runs, waits for the compilation to end, then watches
;; MAILDIR, delivers a message into it and prints what was reported.

;;; Code:

(require 'mailsync-gnus)

(let ((maildir (pop command-line-args-left))
      (reported nil))
  (mailsync-build-module)
  (while (get-buffer-process "*compilation*")
    (accept-process-output nil 0.2))
  (accept-process-output nil 0.2)
  (princ (format "loaded: %s\n" (featurep 'mailsync-gnus-module)))
  (let ((mailsync-maildirs `((,maildir :server "nnmaildir+x")))
        (mailsync-check-on-start nil)
        (mailsync-delay 0)
        (mailsync-folder-changed-functions
         (list (lambda (_directory folders) (setq reported (append reported folders))))))
    (mailsync-start)
    (let ((deadline (+ (float-time) 10)))
      (while (and (not (mailsync--ready-p)) (< (float-time) deadline))
        (accept-process-output nil 0.05)))
    (let ((tmp (expand-file-name "tmp/1.build-test" maildir)))
      (write-region "Subject: built\n\nbody\n" nil tmp nil 'silent)
      (rename-file tmp (expand-file-name "new/1.build-test" maildir)))
    (let ((deadline (+ (float-time) 5)))
      (while (and (not reported) (< (float-time) deadline))
        (accept-process-output nil 0.05)))
    (princ (format "reported: %S\n" reported))
    (mailsync-stop)))

;;; build-module.el ends here
