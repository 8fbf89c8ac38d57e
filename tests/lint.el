;;; lint.el --- byte-compile, checkdoc and package-lint the Lisp files  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L . -l tests/lint.el FILE...
;; Exits non-zero on any warning.  The package is the multi-file package
;; `mailsync' (mailsync-pkg.el), so its symbol prefix is `mailsync'.

;;; Code:

(require 'bytecomp)
(require 'checkdoc)
(require 'subr-x)
;; Debian's elpa-package-lint, found without loading site-start.
(dolist (dir (file-expand-wildcards "/usr/share/emacs/site-lisp/elpa/*"))
  (add-to-list 'load-path dir))
(require 'package-lint)

(defvar lint--failed nil "Non-nil when a check failed.")

(defconst lint--main-file
  (expand-file-name "../mailsync-pkg.el" (file-name-directory load-file-name))
  "The package descriptor: package-lint takes the prefix `mailsync' from it.")

(defun lint--file (file)
  "Byte-compile FILE with warnings as errors, then checkdoc and package-lint it."
  (let ((byte-compile-error-on-warn t)
        (byte-compile-dest-file-function (lambda (_) (make-temp-file "lint" nil ".elc"))))
    (unless (byte-compile-file file)
      (setq lint--failed t)
      (message "%s: byte-compile failed" file)))
  (with-current-buffer (find-file-noselect file)
    (let ((checkdoc-diagnostic-buffer "*checkdoc*")
          (checkdoc-autofix-flag 'never))
      (when (get-buffer "*checkdoc*") (kill-buffer "*checkdoc*"))
      (checkdoc-current-buffer t)
      (with-current-buffer (get-buffer-create "*checkdoc*")
        (let ((text (replace-regexp-in-string "[[:space:]\f]+" "" (replace-regexp-in-string "^\\*\\*\\*.*$" "" (buffer-string)))))
          (when (> (length text) 0)
            (setq lint--failed t)
            (message "%s: checkdoc:\n%S" file text)))))
    (let* ((package-lint-main-file lint--main-file)
           (problems (package-lint-buffer)))
      (dolist (problem problems)
        (setq lint--failed t)
        (message "%s:%d:%d: package-lint %s: %s" file (nth 0 problem) (nth 1 problem)
                 (nth 2 problem) (nth 3 problem))))))

(dolist (file command-line-args-left)
  (lint--file file))
(setq command-line-args-left nil)
(if lint--failed
    (kill-emacs 1)
  (message "lint: %s clean" "byte-compile, checkdoc, package-lint"))

;;; lint.el ends here
