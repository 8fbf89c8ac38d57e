;;; emacs-start-bench.el --- Starting to watch at size, in Emacs  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/bench.sh as
;;   emacs --batch -Q -L REPO -L REPO/lisp -l tests/bench/emacs-start-bench.el DIR
;; Two tables, each alternating the order of its contenders:
;;
;; 1. Starting to watch 10,000 folders (nnmaildir layout): `mailsync-start'
;;    against `file-notify-add-watch' on each folder's new/ and cur/ (what
;;    mailsync watches besides the folder itself).  Each sample runs in a
;;    fresh Emacs (this file with the arguments `one WAY STORE'), so the
;;    memory it adds is its own.  A 5 ms timer runs throughout: its longest
;;    gap is the longest time Emacs could not answer.
;;
;; 2. The start-up check of 2,000 Gnus groups (`mailsync-check-on-start'):
;;    the longest gap of the same timer while every group is checked, in one
;;    batch (as before batches) and in batches of 50 (the default).

;;; Code:

(require 'cl-lib)
(require 'filenotify)
(require 'mailsync-gnus)

(defun bench-start-progress (format-string &rest args)
  "Say on stderr what the benchmark does, from FORMAT-STRING and ARGS."
  (princ (concat (apply #'format format-string args) "\n") #'external-debugging-output))

(defun bench-start-rss-kib ()
  "This Emacs's resident memory now, in KiB."
  (with-temp-buffer
    (insert-file-contents "/proc/self/status")
    (re-search-forward "^VmRSS:[ \t]*\\([0-9]+\\)")
    (string-to-number (match-string 1))))

(defvar bench-start-ticks nil "Times the 5 ms timer ran, newest first.")

(defun bench-start-longest-gap (from to)
  "The longest time between timer runs from FROM to TO, in ms."
  (let ((times (sort (append (list from to)
                             (cl-remove-if-not (lambda (tick) (< from tick to)) bench-start-ticks))
                     #'<))
        (longest 0))
    (while (cdr times)
      (setq longest (max longest (- (cadr times) (car times)))
            times (cdr times)))
    (* 1000 longest)))

(defun bench-start-wait-until (predicate seconds)
  "Let Emacs run until PREDICATE holds or SECONDS pass."
  (let ((deadline (+ (float-time) seconds)))
    (while (and (not (funcall predicate)) (< (float-time) deadline))
      (accept-process-output nil 0.005))))

(defun bench-start-one (way store)
  "Start watching STORE the WAY given; print a plist of figures."
  (let* ((folders (directory-files store t "\\`[^.]"))
         (ticker (run-with-timer 0.005 0.005 (lambda () (push (float-time) bench-start-ticks))))
         watches rss-before start blocked ready)
    (accept-process-output nil 0.05)
    (garbage-collect)
    (setq rss-before (bench-start-rss-kib)
          start (float-time))
    (pcase way
      ("mailsync"
       (let ((mailsync-maildirs `((,store :layout nnmaildir)))
             (mailsync-check-on-start nil))
         (mailsync-start)
         (setq blocked (float-time))
         (bench-start-wait-until #'mailsync--ready-p 300)))
      ("file-notify"
       (dolist (folder folders)
         (dolist (sub '("new" "cur"))
           (push (file-notify-add-watch (expand-file-name sub folder) '(change) #'ignore)
                 watches)))
       (setq blocked (float-time))))
    (setq ready (float-time))
    (bench-start-wait-until #'ignore 0.1)
    (cancel-timer ticker)
    (garbage-collect)
    (prin1 (list :blocked (* 1000 (- blocked start))
                 :stall (bench-start-longest-gap start (float-time))
                 :ready (* 1000 (- ready start))
                 :rss-added (/ (- (bench-start-rss-kib) rss-before) 1024.0)))
    (terpri)))

(defun bench-start-child (way store)
  "Run `bench-start-one' for WAY and STORE in a fresh Emacs; return its plist."
  (with-temp-buffer
    (let ((status (call-process (expand-file-name invocation-name invocation-directory)
                                nil t nil "--batch" "-Q" "-L" mailsync--directory
                                "-L" (expand-file-name "lisp" mailsync--directory)
                                "-l" (or load-file-name (locate-library "emacs-start-bench"))
                                "one" way store)))
      (unless (eql status 0)
        (error "The %s sample failed: %s" way (buffer-string)))
      (goto-char (point-max))
      (forward-line -1)
      (read (current-buffer)))))

(defun bench-start-show (values decimals)
  "VALUES as median [min–max] with DECIMALS decimals."
  (let ((sorted (sort (copy-sequence values) #'<)))
    (format (format "%%.%df [%%.%df–%%.%df]" decimals decimals decimals)
            (nth (/ (length sorted) 2) sorted) (car sorted) (car (last sorted)))))

(defun bench-start-median (values)
  "The median of VALUES."
  (nth (/ (length values) 2) (sort (copy-sequence values) #'<)))

(defun bench-start-make-folders (root count)
  "Make COUNT nnmaildir folders f0… below ROOT, quickly."
  (make-directory root t)
  (call-process "sh" nil nil nil "-c"
                (format "cd %s && i=0; while [ $i -lt %d ]; do echo f$i/cur f$i/new f$i/tmp; i=$((i+1)); done | xargs mkdir -p"
                        (shell-quote-argument root) count)))

(defun bench-start-watch-table (dir runs)
  "Table 1, RUNS samples per way, over a 10,000-folder store in DIR."
  (let ((store (expand-file-name "store10k" dir))
        (ways '("mailsync" "file-notify"))
        (results (list (cons "mailsync" nil) (cons "file-notify" nil))))
    (bench-start-progress "emacs-start-bench: 10,000 folders")
    (bench-start-make-folders store 10000)
    (dotimes (n runs)
      (dolist (way (if (cl-oddp n) (reverse ways) ways))
        (push (bench-start-child way store) (cdr (assoc way results)))))
    (princ (format "Starting to watch 10,000 folders in Emacs %s (%d runs each, a fresh Emacs per run; median [min–max])\n\n"
                   emacs-version runs))
    (princ "| way | the call blocks Emacs, ms | longest time Emacs cannot answer, ms | until every folder is watched, ms | memory added to Emacs, MiB |\n")
    (princ "| --- | --- | --- | --- | --- |\n")
    (dolist (way ways)
      (let ((samples (cdr (assoc way results))))
        (princ (format "| %s | %s | %s | %s | %s |\n"
                       (if (equal way "mailsync") "`mailsync-start`"
                         "`file-notify-add-watch` on each new/ and cur/ (20,000 watches)")
                       (bench-start-show (mapcar (lambda (s) (plist-get s :blocked)) samples) 1)
                       (bench-start-show (mapcar (lambda (s) (plist-get s :stall)) samples) 1)
                       (bench-start-show (mapcar (lambda (s) (plist-get s :ready)) samples) 0)
                       (bench-start-show (mapcar (lambda (s) (plist-get s :rss-added)) samples) 1)))))
    (delete-directory store t)))

(defun bench-start-check-table (dir runs)
  "Table 2: the start-up check of 2,000 groups, RUNS samples per batch size."
  (require 'mailsync-gnus-sandbox)
  (let* ((mail (expand-file-name "mail2k" dir))
         (sizes '(2000 50))
         (results (list (cons 2000 nil) (cons 50 nil)))
         (checked 0))
    (bench-start-progress "emacs-start-bench: Gnus with 2,000 groups")
    (bench-start-make-folders mail 2000)
    (make-directory (expand-file-name "gnus2k" dir) t)
    (let ((inhibit-message t))
      (mailsync-gnus-sandbox-start
       (expand-file-name "gnus2k" dir) `((nnmaildir "bench" (directory ,mail)))
       (mapcar (lambda (folder) (concat "nnmaildir+bench:" folder))
               (directory-files mail nil "\\`[^.]"))))
    (add-hook 'mailsync-after-check-functions (lambda (groups) (cl-incf checked (length groups))))
    (dotimes (n runs)
      (dolist (size (if (cl-oddp n) (reverse sizes) sizes))
        (bench-start-progress "  batch size %d" size)
        (let ((mailsync-check-on-start t)
              (mailsync-check-batch-size size)
              (inhibit-message t)
              (ticker (run-with-timer 0.005 0.005 (lambda () (push (float-time) bench-start-ticks))))
              start)
          (setq checked 0 bench-start-ticks nil)
          (accept-process-output nil 0.05)
          (setq start (float-time))
          (mailsync-start)
          (bench-start-wait-until (lambda () (>= checked 2000)) 600)
          (let ((done (float-time)))
            (cancel-timer ticker)
            (mailsync-stop)
            (push (list :stall (bench-start-longest-gap start done)
                        :total (* 1000 (- done start)))
                  (cdr (assoc size results)))))))
    (princ (format "\nThe start-up check of 2,000 Gnus groups (nnmaildir, Emacs %s; %d runs each; median [min–max])\n\n"
                   emacs-version runs))
    (princ "| `mailsync-check-batch-size` | longest time Emacs cannot answer, ms | until every group is checked, ms |\n")
    (princ "| --- | --- | --- |\n")
    (dolist (size sizes)
      (let ((samples (cdr (assoc size results))))
        (princ (format "| %d%s | %s | %s |\n" size
                       (if (= size 2000) " (one batch: the check before batches)" " (the default)")
                       (bench-start-show (mapcar (lambda (s) (plist-get s :stall)) samples) 0)
                       (bench-start-show (mapcar (lambda (s) (plist-get s :total)) samples) 0)))))
    (let ((stalls (mapcar (lambda (size)
                            (bench-start-median (mapcar (lambda (s) (plist-get s :stall))
                                                        (cdr (assoc size results)))))
                          sizes)))
      (princ (format "\nLongest stall, one batch / batches of 50: %.1f×.\n"
                     (/ (car stalls) (max 0.001 (cadr stalls))))))))

(pcase command-line-args-left
  (`("one" ,way ,store)
   (setq command-line-args-left nil)
   (bench-start-one way store))
  (`(,dir . ,_)
   (setq command-line-args-left nil)
   (let ((dir (file-name-as-directory (expand-file-name dir))))
     (bench-start-watch-table dir 3)
     (bench-start-check-table dir 3))))

;;; emacs-start-bench.el ends here
