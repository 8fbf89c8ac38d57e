;;; emacs-bench.el --- mailsync in Gnus against two baselines, side by side  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/bench.sh as
;;   emacs --batch -Q -L REPO -l tests/bench/emacs-bench.el DIR IDLE-SECONDS
;; A real Gnus over an nnmaildir store of 10 folders in DIR.  Three ways of
;; telling Gnus about new mail, one after the other in this one Emacs:
;;   mailsync     the module, waking Emacs through its pipe;
;;   file-notify  Emacs's own `file-notify-add-watch' on each new/, with the
;;                handler a careful user writes: the folder noted, and one
;;                timer of `mailsync-delay' checks every noted group at once;
;;   seed         rpatterson.mailsync's path: a watcher outside Emacs
;;                (inotifywait on each new/, as watch_maildirs) and one
;;                `emacsclient --eval' per reported folder.
;; Every check goes through the same `mailsync--check-groups', so Gnus's own
;; cost is the same for all and is measured apart.

;;; Code:

(require 'cl-lib)
(require 'gnus)
(require 'gnus-group)
(require 'filenotify)
(require 'server)
(require 'mailsync-gnus)
(require 'mailsync-gnus-sandbox)

(defvar bench-dir (file-name-as-directory (expand-file-name (pop command-line-args-left))))
(defvar bench-idle (string-to-number (or (pop command-line-args-left) "60")))
(defvar bench-mail (expand-file-name "mail" bench-dir))
(defvar bench-folders (mapcar (lambda (n) (format "f%d" n)) (number-sequence 0 9)))
(defvar bench-counter 0)
(defvar bench-deliveries (string-to-number (or (getenv "BENCH_DELIVERIES") "200")))

;; What each way did: Elisp callbacks, group checks, time in checks, and
;; time in its own Emacs code.
(defvar bench-callbacks 0)
(defvar bench-checks 0)
(defvar bench-check-time 0.0)
(defvar bench-own-time 0.0)

(defun bench-group (folder) (concat "nnmaildir+bench:" folder))

(defun bench-unread (folder) (or (gnus-group-unread (bench-group folder)) 0))

(defun bench-deliver (folder)
  "Deliver one message into FOLDER as an MDA does."
  (let* ((name (format "%d.%d.bench" (emacs-pid) (cl-incf bench-counter)))
         (dir (expand-file-name folder bench-mail))
         (tmp (expand-file-name name (expand-file-name "tmp" dir))))
    (let ((coding-system-for-write 'utf-8-unix))
      (write-region (format "Subject: %s\n\nbody\n" name) nil tmp nil 'silent))
    (rename-file tmp (expand-file-name name (expand-file-name "new" dir)))))

(defun bench-wait (seconds)
  "Let Emacs run for up to SECONDS, as its command loop would.
`read-event' also dispatches file-notify events, which in batch
`accept-process-output' alone leaves queued."
  (read-event nil nil seconds))

(defun bench-wait-until (predicate seconds)
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (bench-wait 0.001))
    value))

(defun bench-count-checks (groups)
  "In `mailsync-after-check-functions': count GROUPS."
  (cl-incf bench-checks (length groups)))

(defun bench-time-checks (function groups)
  "Advice around `mailsync--check-groups': time FUNCTION on GROUPS."
  (let ((start (float-time)))
    (prog1 (funcall function groups)
      (cl-incf bench-check-time (- (float-time) start)))))

;;;; The three ways

(defvar bench-watches nil)
(defvar bench-seed-process nil)

(defvar bench-pending nil "Folders the file-notify handler noted, newest first.")
(defvar bench-pending-timer nil "The timer that checks `bench-pending'.")

(defun bench-file-notify-handler (event)
  "The baseline handler for file-notify EVENT: note the folder, arm the timer."
  (let ((start (float-time)))
    (cl-incf bench-callbacks)
    ;; EVENT's file is FOLDER/new/NAME.
    (cl-pushnew (file-name-nondirectory
                 (directory-file-name
                  (file-name-directory
                   (directory-file-name (file-name-directory (nth 2 event))))))
                bench-pending :test #'equal)
    (unless (timerp bench-pending-timer)
      (setq bench-pending-timer (run-with-timer mailsync-delay nil #'bench-file-notify-flush)))
    (cl-incf bench-own-time (- (float-time) start))))

(defun bench-file-notify-flush ()
  "Check the groups of every folder noted since the last flush, in one call."
  (let ((start (float-time))
        (check-before bench-check-time)
        (folders (reverse bench-pending)))
    (setq bench-pending nil bench-pending-timer nil)
    (mailsync--check-groups (mapcar #'bench-group folders))
    (cl-incf bench-own-time (- (float-time) start (- bench-check-time check-before)))))

(defun bench-seed-check (group)
  "What the seed's emacsclient calls for GROUP."
  (cl-incf bench-callbacks)
  (mailsync--check-groups (list group)))

(defun bench-time-server (function &rest args)
  "Advice around `server-process-filter': time Emacs's side of emacsclient."
  (let ((start (float-time))
        (check-before bench-check-time))
    (prog1 (apply function args)
      (cl-incf bench-own-time (- (float-time) start (- bench-check-time check-before))))))

(defvar bench-ways
  (list
   (list "mailsync"
         (lambda ()
           (setq mailsync-maildirs `((,bench-mail :server "nnmaildir+bench" :layout nnmaildir))
                 mailsync-check-on-start nil)
           (mailsync-start)
           (while (not (mailsync--ready-p))
             (accept-process-output nil 0.01)))
         #'mailsync-stop
         (lambda () (plist-get mailsync--counters :wakeups))
         (lambda () (plist-get mailsync--counters :own-time)))
   (list "file-notify + Lisp delay"
         (lambda ()
           (setq bench-watches
                 (mapcar (lambda (folder)
                           (file-notify-add-watch
                            (expand-file-name "new" (expand-file-name folder bench-mail))
                            '(change) #'bench-file-notify-handler))
                         bench-folders)))
         (lambda () (mapc #'file-notify-rm-watch bench-watches))
         (lambda () bench-callbacks)
         (lambda () bench-own-time))
   (list "seed"
         (lambda ()
           (setq server-socket-dir (expand-file-name "socket" bench-dir)
                 server-name "bench")
           (server-start)
           (advice-add 'server-process-filter :around #'bench-time-server)
           (setq bench-seed-process
                 (start-process
                  "seed" nil "sh" "-c"
                  ;; Like watch_maildirs: the new/ directories only (with -r,
                  ;; Gnus's own writes under .nnmaildir/ would loop forever).
                  (format "inotifywait -m -q -e moved_to -e create --format '%%w' %s | \
while read -r dir; do folder=$(basename \"$(dirname \"$dir\")\"); \
emacsclient -s %s --eval \"(bench-seed-check \\\"nnmaildir+bench:$folder\\\")\" >/dev/null; done"
                          (mapconcat (lambda (folder)
                                       (shell-quote-argument
                                        (expand-file-name "new" (expand-file-name folder bench-mail))))
                                     bench-folders " ")
                          (shell-quote-argument (expand-file-name "bench" server-socket-dir)))))
           (set-process-query-on-exit-flag bench-seed-process nil)
           (sleep-for 0.5))
         (lambda ()
           (call-process "pkill" nil nil nil "-f" (concat "inotifywait -m -q -e moved_to -e create --format %w " bench-mail))
           (delete-process bench-seed-process)
           (advice-remove 'server-process-filter #'bench-time-server)
           (server-force-delete))
         (lambda () bench-callbacks)
         (lambda () bench-own-time))))

;;;; Measurements

(defun bench-percentile (values fraction)
  (let ((sorted (sort (copy-sequence values) #'<)))
    (nth (min (1- (length sorted)) (floor (* fraction (length sorted)))) sorted)))

(defun bench-quiet (seconds)
  "Let Emacs run until nothing happened for SECONDS."
  (let ((last -1))
    (while (/= last (+ bench-checks bench-callbacks (plist-get mailsync--counters :wakeups)))
      (setq last (+ bench-checks bench-callbacks (plist-get mailsync--counters :wakeups)))
      (let ((deadline (+ (float-time) seconds)))
        (while (< (float-time) deadline) (bench-wait 0.05))))))

(defun bench-latencies (count)
  "Deliver COUNT messages one at a time; return ms until Gnus shows each."
  (let (latencies)
    (dotimes (n count)
      (let* ((folder (nth (% n 10) bench-folders))
             (before (bench-unread folder))
             (start (float-time)))
        (bench-deliver folder)
        (when (bench-wait-until (lambda () (> (bench-unread folder) before)) 5.0)
          (push (* 1000 (- (float-time) start)) latencies))
        ;; Let each way finish what the delivery set off before the next.
        (bench-wait-until #'ignore 0.02)))
    latencies))

(defun bench-burst ()
  "1,000 messages into the 10 folders from outside Emacs, as fast as it goes."
  (let ((targets (mapcar (lambda (f) (+ (bench-unread f) 100)) bench-folders)))
    (call-process "python3" nil nil nil "-c" "
import os, sys
root = sys.argv[1]
for n in range(1000):
    folder = os.path.join(root, 'f%d' % (n % 10))
    name = 'burst.%d.%d' % (os.getpid(), n)
    with open(os.path.join(folder, 'tmp', name), 'w') as f:
        f.write('Subject: burst %d\\n\\nbody\\n' % n)
    os.rename(os.path.join(folder, 'tmp', name), os.path.join(folder, 'new', name))
" bench-mail)
    (bench-wait-until
     (lambda () (cl-every (lambda (f target) (>= (bench-unread f) target)) bench-folders targets))
     60)
    (bench-quiet 1.0)))

(defvar bench-timer-runs 0 "Timers that ran, counted by `bench-count-timer'.")
(defvar bench-timer-functions nil "The functions of the timers that ran.")

(defun bench-count-timer (timer)
  "Advice before `timer-event-handler': count TIMER's run and note its function."
  (cl-incf bench-timer-runs)
  (push (timer--function timer) bench-timer-functions))

(defun bench-main-thread-switches ()
  "Voluntary context switches of Emacs's main thread so far."
  (with-temp-buffer
    (insert-file-contents (format "/proc/self/task/%d/status" (emacs-pid)))
    (re-search-forward "^voluntary_ctxt_switches:[ \t]*\\([0-9]+\\)")
    (string-to-number (match-string 1))))

(defun bench-progress (format-string &rest args)
  "Say on stderr what the benchmark is doing, from FORMAT-STRING and ARGS."
  (princ (concat (apply #'format format-string args) "\n") #'external-debugging-output))

(defun bench-run (way)
  "Measure WAY; return a plist of figures."
  (bench-progress "emacs-bench: %s" (car way))
  (pcase-let ((`(,name ,start ,stop ,callbacks ,own) way))
    (setq bench-callbacks 0 bench-checks 0 bench-check-time 0.0 bench-own-time 0.0)
    (let ((mailsync-delay 0))
      (funcall start)
      (bench-quiet 0.3)
      (let* ((latencies (progn (bench-progress "  latency") (bench-latencies bench-deliveries)))
             (check-ms (/ (* 1000 bench-check-time) (max 1 bench-checks))))
        (funcall stop)
        (bench-quiet 0.5)
        (setq bench-callbacks 0 bench-checks 0 bench-check-time 0.0 bench-own-time 0.0)
        (setq mailsync--counters (list :wakeups 0 :checks 0 :own-time 0.0 :check-time 0.0))
        (let ((mailsync-delay 0.2))
          (funcall start)
          (bench-quiet 0.3)
          (let ((callbacks-before (funcall callbacks))
                (own-before (funcall own))
                (checks-before bench-checks))
            (bench-progress "  burst")
            (bench-burst)
            (bench-progress "  idle %d s" bench-idle)
            (let* ((burst-callbacks (- (funcall callbacks) callbacks-before))
                   (burst-own (- (funcall own) own-before))
                   (burst-checks (- bench-checks checks-before))
                   (idle-callbacks-before (funcall callbacks))
                   (timers-before (progn (setq bench-timer-functions nil) bench-timer-runs))
                   (switches-before (bench-main-thread-switches))
                   (idle-start (float-time)))
              (while (< (- (float-time) idle-start) bench-idle)
                (bench-wait (- bench-idle (- (float-time) idle-start))))
              (let ((idle-switches (- (bench-main-thread-switches) switches-before))
                    (timers (- bench-timer-runs timers-before))
                    (idle-callbacks (- (funcall callbacks) idle-callbacks-before)))
                (funcall stop)
                (bench-quiet 0.3)
                (list :name name
                      :p50 (bench-percentile latencies 0.5)
                      :p99 (bench-percentile latencies 0.99)
                      :measured (length latencies)
                      :check-ms check-ms
                      :callbacks burst-callbacks
                      :checks burst-checks
                      :own-ms (* 1000 burst-own)
                      :timers timers
                      :timer-functions (delete-dups (copy-sequence bench-timer-functions))
                      :idle-callbacks idle-callbacks
                      :idle-switches idle-switches)))))))))

;;;; Main

(dolist (folder bench-folders)
  (dolist (sub '("cur" "new" "tmp"))
    (make-directory (expand-file-name sub (expand-file-name folder bench-mail)) t)))
(mailsync-gnus-sandbox-start bench-dir `((nnmaildir "bench" (directory ,bench-mail)))
                             (mapcar #'bench-group bench-folders))
(add-hook 'mailsync-after-check-functions #'bench-count-checks)
(advice-add 'mailsync--check-groups :around #'bench-time-checks)
(advice-add 'timer-event-handler :before #'bench-count-timer)

(let ((results (let ((inhibit-message t)) (mapcar #'bench-run bench-ways))))
  (princ (format "Emacs %s, Gnus over nnmaildir, 10 folders; idle window %d s\n\n" emacs-version bench-idle))
  (princ "| way | delivery → Gnus p50 | p99 | Gnus's own check | Elisp callbacks / burst | checks / burst | own main-thread time / burst | per folder | idle: timer runs | idle: callbacks | idle: main-thread wake-ups |\n")
  (princ "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
  (dolist (r results)
    (princ (format "| %s | %.2f ms | %.2f ms | %.2f ms | %d | %d | %.2f ms | %.3f ms | %d | %d | %d |\n"
                   (plist-get r :name) (plist-get r :p50) (plist-get r :p99) (plist-get r :check-ms)
                   (plist-get r :callbacks) (plist-get r :checks) (plist-get r :own-ms)
                   (/ (plist-get r :own-ms) 10) (plist-get r :timers)
                   (plist-get r :idle-callbacks) (plist-get r :idle-switches))))
  (dolist (r results)
    (when (plist-get r :timer-functions)
      (princ (format "\nTimers that ran in %s's idle window: %s."
                     (plist-get r :name)
                     (mapconcat (lambda (f) (format "`%s'" f)) (plist-get r :timer-functions) ", ")))))
  (princ "\nThe benchmark's own wait ends once per idle window: one main-thread wake-up in each row is its own.\n")
  (let ((mailsync (car results)))
    (dolist (r (cdr results))
      (princ (format "\n%s / mailsync: %.1f× the callbacks, %.1f× the checks, %.1f× the own main-thread time per burst; latency p50 %.1f×"
                     (plist-get r :name)
                     (/ (float (plist-get r :callbacks)) (max 1 (plist-get mailsync :callbacks)))
                     (/ (float (plist-get r :checks)) (max 1 (plist-get mailsync :checks)))
                     (/ (plist-get r :own-ms) (max 0.001 (plist-get mailsync :own-ms)))
                     (/ (plist-get r :p50) (max 0.001 (plist-get mailsync :p50)))))))
  (princ "\n"))

;;; emacs-bench.el ends here
