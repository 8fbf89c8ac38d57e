;;; emacs-imap-bench.el --- Gnus on nnimap: what a check of new mail costs Emacs  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/bench.sh as
;;   emacs --batch -Q -L REPO -L REPO/lisp -l tests/bench/emacs-imap-bench.el DIR [DELIVERIES]
;; A real Dovecot on 127.0.0.1 with 250 mailboxes; Gnus reads it over nnimap
;; through tests/latency-proxy.py, which adds a round-trip time (RTT) and
;; logs every command Gnus's connection sends; the module watches the same
;; account through the same proxy (`mailsync-imap-servers' t).
;;
;; Per RTT (0, 50, 200 ms), side by side and alternating: a message saved on
;; the server (`doveadm save') into a subscribed group, timed until Gnus's
;; unread count shows it, with the main-thread time mailsync took for it (its
;; wake-up, its checks, reading answers) and the commands Gnus sent; and
;; Gnus's own `g' over 10 and over 50 groups, which holds Emacs for its whole
;; wall time.  Then the start-up check of 200 groups that all got mail before
;; mailsync started, at RTT 50 ms: the longest Emacs was held at once, and
;; how long until every count was right; beside it `g' over the same groups.

;;; Code:

(require 'cl-lib)
(require 'gnus)
(require 'gnus-group)
(require 'nnimap)
(require 'nsm)
(require 'auth-source)
(require 'mailsync-gnus)
(require 'mailsync-gnus-sandbox)

(defvar bench-dir (file-name-as-directory (expand-file-name (pop command-line-args-left))))
(defvar bench-deliveries (string-to-number (or (pop command-line-args-left) "10")))
(defconst bench-repo
  (file-name-directory (directory-file-name (file-name-directory
                                             (directory-file-name (file-name-directory load-file-name))))))
(defconst bench-mailboxes (mapcar (lambda (n) (format "b%03d" n)) (number-sequence 1 50))
  "The mailboxes of the per-delivery rows: Gnus subscribes to all 50.")
(defconst bench-start-mailboxes (mapcar (lambda (n) (format "s%03d" n)) (number-sequence 1 200))
  "The mailboxes of the start-up check: Gnus subscribes to all 200.")

(defvar bench-server nil "Dovecot's directory.")
(defvar bench-port nil "Dovecot's IMAP port.")
(defvar bench-counter 0 "Makes messages unique.")

;;;; Timing mailsync's work on Emacs's thread

(defvar bench-busy 0.0 "Seconds mailsync's entry points held Emacs, in all.")
(defvar bench-longest 0.0 "The longest one call of them held Emacs.")
(defvar bench-longest-gc 0.0 "Of that call's time, what garbage collection took.")
(defvar bench-longest-less-gc 0.0 "The longest one call held Emacs, less garbage collection.")
(defvar bench-depth 0 "How deep the timed calls are nested (only the outer one counts).")

(defvar bench-longest-by (make-hash-table) "Entry point -> the longest it held Emacs.")

(defun bench-timer (name)
  "An :around advice that adds the wall time of NAME's calls to `bench-busy'."
  (lambda (function &rest args)
    (if (> bench-depth 0)
        (apply function args)
      (let ((start (float-time))
            (gc gc-elapsed)
            (bench-depth 1))
        (prog1 (apply function args)
          (let* ((took (- (float-time) start))
                 (collecting (- gc-elapsed gc)))
            (setq bench-busy (+ bench-busy took)
                  bench-longest-less-gc (max bench-longest-less-gc (- took collecting)))
            (when (> took bench-longest)
              (setq bench-longest took
                    bench-longest-gc collecting))
            (puthash name (max took (gethash name bench-longest-by 0)) bench-longest-by)))))))

(dolist (function '(mailsync--wake mailsync--run-slice mailsync--fetch-output mailsync--fetch-finish))
  (advice-add function :around (bench-timer function)))

;;;; The server, the proxy, Gnus

(defun bench-run (program &rest args)
  "Run PROGRAM with ARGS; its output, or an error when it fails."
  (with-temp-buffer
    (let ((status (apply #'call-process program nil t nil args)))
      (unless (eql status 0)
        (error "%s %S failed: %s" program args (buffer-string)))
      (string-trim (buffer-string)))))

(defun bench-doveadm (&rest args)
  "Run doveadm ARGS on the bench's Dovecot."
  (apply #'bench-run "doveadm" "-c" (expand-file-name "dovecot.conf" (file-truename bench-server)) args))

(defun bench-save (mailbox)
  "Save a message into MAILBOX on the server, as a delivery agent does."
  (let ((message (expand-file-name "message" bench-dir)))
    (with-temp-file message
      (insert (format "From: bench@example.org\nSubject: %d\nMessage-ID: <%d.%d@bench>\n\nbody\n"
                      (cl-incf bench-counter) (emacs-pid) bench-counter)))
    (with-temp-buffer
      (unless (eql 0 (call-process "doveadm" message t nil
                                   "-c" (expand-file-name "dovecot.conf" (file-truename bench-server))
                                   "save" "-u" "test" "-m" mailbox))
        (error "Doveadm save failed: %s" (buffer-string))))))

(defun bench-wait-until (predicate seconds)
  "Let Emacs run until PREDICATE holds or SECONDS pass; its value."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.002))
    value))

(defun bench-proxy (port rtt log)
  "Start the latency proxy to PORT adding RTT ms, logging to LOG; (PROCESS . PORT)."
  (let* ((buffer (generate-new-buffer " *proxy*"))
         (process (make-process :name "proxy" :buffer buffer :noquery t :connection-type 'pipe
                                :command (list "python3" (expand-file-name "tests/latency-proxy.py" bench-repo)
                                               (number-to-string port) (number-to-string rtt) log "900"))))
    (unless (bench-wait-until (lambda () (with-current-buffer buffer (string-match-p "\n" (buffer-string)))) 10)
      (error "The latency proxy did not start"))
    (cons process (with-current-buffer buffer (string-to-number (buffer-string))))))

(defun bench-wire (log)
  "How many commands Gnus's connection (the proxy's first) has sent, per LOG."
  (with-temp-buffer
    (when (file-exists-p log)
      (insert-file-contents log))
    (how-many "^1 " (point-min) (point-max))))

(defun bench-checks-idle-p ()
  "Non-nil when no check waits or is under way."
  (and (mailsync--ready-p) (null mailsync--queue) (null mailsync--fetches)
       (not (timerp mailsync--check-timer))))

(defmacro bench-with-gnus (spec &rest body)
  "Run BODY with Gnus on nnimap through a proxy; SPEC is (LOG RTT GROUPS).
LOG is bound to the proxy's log; GROUPS (mailbox names) are subscribed."
  (declare (indent 1))
  (pcase-let ((`(,log ,rtt ,groups) spec))
    `(let* ((,log (expand-file-name (format "proxy-%d-%d.log" ,rtt (cl-incf bench-counter)) bench-dir))
            (proxy (bench-proxy bench-port ,rtt ,log))
            (authinfo (expand-file-name "authinfo" bench-dir))
            (auth-sources (list authinfo))
            (auth-source-do-cache nil)
            (nsm-trust-local-network t)
            (settings (mailsync-gnus-sandbox-settings
                       (file-name-as-directory (make-temp-file "bench-gnus" t))
                       (list (list 'nnimap "remote" '(nnimap-address "127.0.0.1")
                                   (list 'nnimap-server-port (cdr proxy)) '(nnimap-stream plain))))))
       (with-temp-file authinfo
         (insert (format "machine 127.0.0.1 port %d login test password secret\n" (cdr proxy))))
       (cl-progv (mapcar #'car settings) (mapcar #'cdr settings)
         (unwind-protect
             (progn
               (mailsync-gnus-sandbox-open (mapcar (lambda (mailbox) (concat "nnimap+remote:" mailbox)) ,groups))
               ,@body)
           (mailsync-stop)
           (let ((inhibit-message t)) (ignore-errors (gnus-group-quit)))
           (setq gnus-newsrc-alist nil gnus-newsrc-hashtb nil gnus-active-hashtb nil)
           (delete-process (car proxy)))))))

;;;; Measures

(defun bench-stats (values &optional scale)
  "VALUES (times SCALE, default 1000: seconds to ms) as \"median [min–max]\"."
  (let* ((scale (or scale 1000))
         (sorted (sort (mapcar (lambda (value) (* scale value)) values) #'<))
         (median (nth (/ (length sorted) 2) sorted)))
    (format "%.1f [%.1f–%.1f]" median (car sorted) (car (last sorted)))))

(defun bench-g (level)
  "Gnus's own `g' at LEVEL: its wall time (it holds Emacs throughout)."
  (let ((start (float-time))
        (inhibit-message t))
    (with-current-buffer gnus-group-buffer
      (gnus-group-get-new-news level))
    (- (float-time) start)))

(defmacro bench-g-sample (log)
  "One `g' over 10 groups and one over 50, recorded with the commands LOG shows."
  `(let ((wire (bench-wire ,log)))
     (push (bench-g 1) g10)
     (push (- (bench-wire ,log) wire) g10-commands)
     (setq wire (bench-wire ,log))
     (push (bench-g 3) g50)
     (push (- (bench-wire ,log) wire) g50-commands)))

(defun bench-rtt (rtt)
  "The per-delivery row and the `g' rows at RTT ms: a list of table lines."
  (let ((groups bench-mailboxes)
        latency busy commands g10 g10-commands g50 g50-commands)
    (bench-with-gnus (log rtt groups)
      ;; 10 groups at level 1: `g' with 1 checks them, with 3 all 50.
      (dolist (mailbox (seq-take groups 10))
        (gnus-group-change-level (concat "nnimap+remote:" mailbox) 1 gnus-level-default-subscribed))
      (bench-g 3)
      (let ((mailsync-imap-servers t)
            (mailsync-maildirs nil)
            (mailsync-check-on-start nil))
        (mailsync-start)
        (unless (bench-wait-until #'mailsync--ready-p 30)
          (error "The module did not get ready at RTT %d" rtt))
        (dotimes (i bench-deliveries)
          (let ((g-first (cl-oddp i)))
            (when g-first
              (bench-g-sample log))
            (let* ((mailbox (nth (* 5 (mod i 10)) groups))
                   (group (concat "nnimap+remote:" mailbox))
                   (before (gnus-group-unread group))
                   (wire (bench-wire log))
                   (start (float-time)))
              (setq bench-busy 0.0)
              (bench-save mailbox)
              (unless (bench-wait-until (lambda () (equal (gnus-group-unread group) (1+ before))) 10)
                (error "Delivery %d into %s not seen at RTT %d" i mailbox rtt))
              (push (- (float-time) start) latency)
              (bench-wait-until #'bench-checks-idle-p 10)
              (push bench-busy busy)
              (push (- (bench-wire log) wire) commands))
            (unless g-first
              (bench-g-sample log))))))
    (list (format "| %d | mailsync (per delivery) | %s | %s | %s |" rtt
                  (bench-stats busy) (bench-stats commands 1) (bench-stats latency))
          (format "| %d | Gnus's `g`, 10 groups | %s | %s | – |" rtt
                  (bench-stats g10) (bench-stats g10-commands 1))
          (format "| %d | Gnus's `g`, 50 groups | %s | %s | – |" rtt
                  (bench-stats g50) (bench-stats g50-commands 1)))))

(defun bench-start-up ()
  "The start-up check of 200 groups with new mail, at RTT 50; table lines."
  (let ((rtt 50) lines)
    (bench-with-gnus (log rtt bench-start-mailboxes)
      (dolist (mailbox bench-start-mailboxes)
        (bench-save mailbox))
      (let* ((mailsync-imap-servers t)
             (mailsync-maildirs nil)
             (mailsync-check-on-start t)
             (wire (bench-wire log))
             ready)
        (setq bench-busy 0.0 bench-longest 0.0 bench-longest-gc 0.0 bench-longest-less-gc 0.0)
        (clrhash bench-longest-by)
        (mailsync-start)
        (unless (bench-wait-until #'mailsync--ready-p 30)
          (error "The module did not get ready"))
        (setq ready (float-time))
        (unless (bench-wait-until
                 (lambda () (and (bench-checks-idle-p)
                                 (cl-every (lambda (mailbox)
                                             (equal (gnus-group-unread (concat "nnimap+remote:" mailbox)) 1))
                                           bench-start-mailboxes)))
                 60)
          (error "The start-up check did not bring every count to 1: %S; queue %d, fetches %d; log: %s"
                 (seq-take (cl-remove-if (lambda (mailbox)
                                           (equal (gnus-group-unread (concat "nnimap+remote:" mailbox)) 1))
                                         bench-start-mailboxes)
                           5)
                 (length mailsync--queue) (length mailsync--fetches)
                 (with-current-buffer (get-buffer-create "*mailsync-log*")
                   (buffer-substring (max (point-min) (- (point-max) 1500)) (point-max)))))
        (push (format "| mailsync's start-up check | %.1f (%.1f of it collecting garbage); %.1f less that | %.0f | %.0f | %d |"
                      (* 1000 bench-longest) (* 1000 bench-longest-gc) (* 1000 bench-longest-less-gc)
                      (* 1000 bench-busy) (* 1000 (- (float-time) ready))
                      (- (bench-wire log) wire))
              lines)
        (message "bench: longest hold by entry point: %S"
                 (let (pairs) (maphash (lambda (k v) (push (cons k (* 1000 v)) pairs)) bench-longest-by) pairs))
        (mailsync-stop)
        ;; Gnus's own `g' over the same 200 groups, with one more message each.
        (dolist (mailbox bench-start-mailboxes)
          (bench-save mailbox))
        (let ((wire (bench-wire log))
              (took (bench-g 3)))
          (push (format "| Gnus's `g` over the same 200 groups | %.1f | %.0f | %.0f | %d |"
                        (* 1000 took) (* 1000 took) (* 1000 took) (- (bench-wire log) wire))
                lines))))
    (nreverse lines)))

(setq bench-server (expand-file-name "dovecot" bench-dir))
(setq bench-port (string-to-number
                  (bench-run (expand-file-name "scripts/dovecot.sh" bench-repo) "start" bench-server)))
(unwind-protect
    (progn
      (apply #'bench-doveadm "mailbox" "create" "-u" "test"
             (append bench-mailboxes bench-start-mailboxes))
      (let ((rows (mapcan #'bench-rtt '(0 50 200)))
            (start-up (bench-start-up)))
        (princ (concat
                "### Gnus on nnimap: what a check of new mail costs Emacs\n\n"
                "A real Dovecot, Gnus reading 50 of its mailboxes over nnimap through a proxy that\n"
                "adds the round-trip time (RTT); the module watches the account through the same proxy.\n"
                (format "Per delivery (%d per RTT, alternating with the `g` samples): main-thread time is what mailsync's\n"
                        bench-deliveries)
                "own calls held Emacs (wake-up, checks, reading answers); Gnus's `g` holds Emacs for its whole wall\n"
                "time. Commands: what Gnus's connection sent. Delivery → count includes Dovecot's own 200–500 ms\n"
                "notify delay and `mailsync-delay`'s 200 ms coalescing window. Median [min–max].\n\n"
                "| RTT ms | what | Emacs main-thread time, ms | IMAP commands from Gnus | delivery → unread count, ms |\n"
                "| --- | --- | --- | --- | --- |\n"
                (mapconcat #'identity rows "\n") "\n\n"
                "Start-up check at RTT 50 ms, 200 subscribed groups that each got a message before mailsync\n"
                "started (every group must be asked about: the fallback, one bulk EXAMINE per slice of groups):\n\n"
                "Emacs collects garbage when any code allocates (with Gnus loaded a collection takes tens of ms\n"
                "here): the longest hold is given whole and less the collections that fell into it.\n\n"
                "| what | longest hold, ms | main-thread time in all, ms | ready → every count right, ms | IMAP commands from Gnus |\n"
                "| --- | --- | --- | --- | --- |\n"
                (mapconcat #'identity start-up "\n") "\n"))))
  (bench-run (expand-file-name "scripts/dovecot.sh" bench-repo) "remove" bench-server))

;;; emacs-imap-bench.el ends here
