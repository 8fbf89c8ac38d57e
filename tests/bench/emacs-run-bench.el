;;; emacs-run-bench.el --- server save to the module's hook, through mailsync run  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/bench.sh as
;;   emacs --batch -Q -L REPO -L REPO/lisp -l tests/bench/emacs-run-bench.el DIR DELIVERIES
;; The whole chain in one Emacs: a Dovecot on 127.0.0.1 with mbsync,
;; `mailsync-run-config' running `mailsync run' (base_delay 0) as a child,
;; and the module watching the local maildir.  A message saved on the
;; server (`doveadm save') is timed until `mailsync-folder-changed-functions'
;; hears of it, with the server watched two ways: `mailsync watch' on
;; Dovecot's own maildir (what a shell on the server gives), and
;; `mailsync idle' over IMAP (what every server gives).  Beside them, the
;; floor: `doveadm save' followed at once by one `mbsync' run by hand.

;;; Code:

(require 'cl-lib)
(require 'mailsync-gnus)

(defvar bench-dir (file-name-as-directory (expand-file-name (pop command-line-args-left))))
(defvar bench-deliveries (string-to-number (or (pop command-line-args-left) "10")))
(defconst bench-repo
  (file-name-directory (directory-file-name (file-name-directory
                                             (directory-file-name (file-name-directory load-file-name))))))
(defvar bench-heard nil "Times the hook heard of INBOX.")

(defun bench-record (_directory folders)
  "In `mailsync-folder-changed-functions': note when INBOX is in FOLDERS."
  (when (member "INBOX" folders)
    (push (float-time) bench-heard)))

(defun bench-run (program &rest args)
  "Run PROGRAM with ARGS; its output, or an error when it fails."
  (apply #'bench-run-with-input nil program args))

(defun bench-run-with-input (input program &rest args)
  "Run PROGRAM with ARGS and file INPUT (nil: none) as its standard input.
Its output, or an error when it fails."
  (with-temp-buffer
    (let ((status (apply #'call-process program input t nil args)))
      (unless (eql status 0)
        (error "%s %S failed: %s" program args (buffer-string)))
      (string-trim (buffer-string)))))

(defun bench-wait-until (predicate seconds)
  "Let Emacs run until PREDICATE holds or SECONDS pass; its value."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.005))
    value))

(defun bench-messages (folder)
  "Messages in maildir FOLDER."
  (+ (length (directory-files (expand-file-name "new" folder) nil "\\`[^.]"))
     (length (directory-files (expand-file-name "cur" folder) nil "\\`[^.]"))))

(defun bench-percentile (values fraction)
  "The FRACTION percentile of VALUES."
  (let ((sorted (sort (copy-sequence values) #'<)))
    (nth (min (1- (length sorted)) (floor (* fraction (length sorted)))) sorted)))

(defun bench-setup (name)
  "A Dovecot, a local maildir and an mbsyncrc under NAME; a plist."
  (let* ((dir (file-name-as-directory (expand-file-name name bench-dir)))
         (server (expand-file-name "server" dir))
         (port (string-to-number (bench-run (expand-file-name "scripts/dovecot.sh" bench-repo)
                                            "start" server "/")))
         (local (expand-file-name "local" dir))
         (rc (expand-file-name "mbsyncrc" dir)))
    (dolist (sub '("cur" "new" "tmp"))
      (make-directory (expand-file-name sub (expand-file-name "INBOX" local)) t))
    (with-temp-file rc
      (insert (format (concat "IMAPAccount test\nHost 127.0.0.1\nPort %d\nUser test\nPass secret\n"
                              "SSLType None\nAuthMechs LOGIN\n\nIMAPStore test-remote\nAccount test\n\n"
                              "MaildirStore test-local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                              "Channel test\nFar :test-remote:\nNear :test-local:\nPatterns *\n"
                              "Create Near\nSyncState *\n")
                      port local local)))
    (list :dir dir :server server :local local :rc rc)))

(defun bench-save (setup)
  "Save a message into INBOX on SETUP's server, as a delivery agent does."
  (let ((message (expand-file-name "message" (plist-get setup :dir))))
    (with-temp-file message
      (insert (format "From: bench@example.org\nSubject: %s\n\nbody\n" (float-time))))
    ;; On standard input: doveadm reads a file named on its command line as
    ;; the mail user, who cannot enter the caller's private temp dir.
    (bench-run-with-input message "doveadm"
                          "-c" (expand-file-name "dovecot.conf" (file-truename (plist-get setup :server)))
                          "save" "-u" "test" "-m" "INBOX")))

(defun bench-chain (remote)
  "Latencies in ms from a server save to the hook, REMOTE watching the server.
REMOTE is `maildir' or `imap'."
  (let* ((setup (bench-setup (symbol-name remote)))
         (program (expand-file-name "target/release/mailsync" bench-repo))
         (local (plist-get setup :local))
         (rc (plist-get setup :rc))
         (config (expand-file-name "mswatchrc" (plist-get setup :dir)))
         (mailsync-program program)
         (mailsync-run-config config)
         (mailsync-delay 0)
         (mailsync-check-on-start nil)
         (mailsync-maildirs `((,local :layout verbatim)))
         (mailsync-imap-servers nil)
         (mailsync-folder-changed-functions (list #'bench-record))
         latencies)
    (with-temp-file config
      (insert "base_delay 0\ninter_delay 0\n"
              (format "sync %s sync --backend mbsync --config %s --local-separator /\n" program rc)
              "mailbox_prefix test :\n"
              (format "store local {\n watch %s watch --maildir %s --layout verbatim --delay 0\n}\n"
                      program local)
              (if (eq remote 'maildir)
                  (format "store server {\n watch %s watch --maildir %s --separator / --delay 0\n}\n"
                          program (expand-file-name "mail" (file-truename (plist-get setup :server))))
                (format "store server {\n watch %s idle --mbsync test --config %s --delay 0\n}\n"
                        program rc))))
    (bench-save setup)
    (unwind-protect
        (progn
          (mailsync-mode 1)
          (unless (bench-wait-until (lambda () (= 1 (bench-messages (expand-file-name "INBOX" local))))
                                    30)
            (error "No start-up sync"))
          (bench-wait-until #'ignore 2)
          (dotimes (round bench-deliveries)
            (setq bench-heard nil)
            (let ((start (float-time)))
              (bench-save setup)
              (unless (bench-wait-until
                       (lambda () (and bench-heard
                                       (= (+ 2 round) (bench-messages (expand-file-name "INBOX" local)))))
                       30)
                (error "Delivery %d not heard" round))
              (push (* 1000 (- (car (last bench-heard)) start)) latencies))
            ;; mbsync sleeps a second when the maildir changed within the
            ;; last one: deliveries come further apart than that.
            (bench-wait-until #'ignore 1.2)))
      (mailsync-mode -1)
      (bench-run (expand-file-name "scripts/dovecot.sh" bench-repo) "remove" (plist-get setup :server)))
    latencies))

(defun bench-floor ()
  "Latencies in ms of a server save followed at once by one mbsync run."
  (let* ((setup (bench-setup "floor"))
         (rc (plist-get setup :rc))
         latencies)
    (unwind-protect
        (progn
          (bench-run "mbsync" "-q" "-c" rc "test")
          (dotimes (_ bench-deliveries)
            (sleep-for 1.2)
            (let ((start (float-time)))
              (bench-save setup)
              (bench-run "mbsync" "-q" "-c" rc "test:INBOX")
              (push (* 1000 (- (float-time) start)) latencies))))
      (bench-run (expand-file-name "scripts/dovecot.sh" bench-repo) "remove" (plist-get setup :server)))
    latencies))

(let ((rows (list (cons "floor: `doveadm save`, then one `mbsync` run by hand (no watching at all)"
                        (bench-floor))
                  (cons "`mailsync run`, server watched by `mailsync watch` on Dovecot's maildir"
                        (bench-chain 'maildir))
                  (cons "`mailsync run`, server watched by `mailsync idle` (NOTIFY)"
                        (bench-chain 'imap)))))
  (princ "### The whole chain in Emacs: server save → `mailsync run` → mbsync → local maildir → module hook\n\n")
  (princ (format (concat "%d messages saved on the server one at a time, timed from the start of `doveadm save` "
                         "to `mailsync-folder-changed-functions` in the Emacs that runs `mailsync run` "
                         "(`mailsync-run-config`, `base_delay 0`, watchers `--delay 0`, `mailsync-delay` 0). "
                         "Deliveries 1.2 s apart (mbsync waits a second when the maildir changed within "
                         "the last one). With `mailsync idle` most of the figure is Dovecot's own "
                         "200–500 ms before it tells IMAP clients (see the `mailsync idle` table for a raw "
                         "IDLE client's).\n\n")
                 bench-deliveries))
  (princ "| path | p50 ms | p99 ms | p50 over the floor, ms |\n| --- | --- | --- | --- |\n")
  (let ((floor (bench-percentile (cdar rows) 0.5)))
    (dolist (row rows)
      (let ((p50 (bench-percentile (cdr row) 0.5)))
        (princ (format "| %s | %.0f | %.0f | %+.0f |\n" (car row) p50
                       (bench-percentile (cdr row) 0.99) (- p50 floor))))))
  (princ "\n"))

;;; emacs-run-bench.el ends here
