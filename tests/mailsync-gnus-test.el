;;; mailsync-gnus-test.el --- ERT tests: real Gnus over real maildirs  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by `make test' in `emacs --batch': a real Gnus with an nnmaildir
;; server over temporary maildirs, and the real module watching them.
;; The tests deliver mail on disk and wait; they never ask Gnus to check.
;; One file, so that one `ert-run-tests-batch-and-exit' runs them all on
;; each Emacs.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'gnus)
(require 'gnus-group)
(require 'gnus-sum)
(require 'nnimap)
(require 'nsm)
(require 'auth-source)
(require 'gnutls)
(require 'mailsync-gnus)
(require 'mailsync-gnus-sandbox)

(defconst mailsync-test--root
  (file-name-directory (directory-file-name (file-name-directory
                                             (or load-file-name buffer-file-name))))
  "The repository's top directory.")

(defvar mailsync-test--tmp nil "The temporary directory of the running test.")
(defvar mailsync-test--mail nil "The nnmaildir directory of the running test.")
(defvar mailsync-test--checked nil "Groups checked so far, in order.")
(defvar mailsync-test--counter 0 "Makes message file names unique.")
(defvar mailsync-test--server "test" "The nnmaildir server of the running test.")
(defvar mailsync-test--servers 0 "Makes server names unique across tests.")

(defconst mailsync-test--odd-folders
  (list "a\"b" "back\\slash" "(shell-command \"touch PWNED\")"
        (decode-coding-string "caf\351 latin1" 'utf-8-unix))
  "Folder names that must be checked as themselves, never evaluated.")

(defun mailsync-test--maildir (folder)
  "Create the maildir FOLDER below the test's nnmaildir directory."
  (dolist (sub '("cur" "new" "tmp"))
    (make-directory (expand-file-name sub (expand-file-name folder mailsync-test--mail)) t)))

(defun mailsync-test--deliver (folder &optional count)
  "Deliver COUNT (default 1) messages into FOLDER as an MDA does."
  (dotimes (_ (or count 1))
    (let* ((name (format "%d.%d.mailsync-test" (emacs-pid)
                         (cl-incf mailsync-test--counter)))
           (dir (expand-file-name folder mailsync-test--mail))
           (tmp (expand-file-name name (expand-file-name "tmp" dir))))
      (let ((coding-system-for-write 'utf-8-unix))
        (write-region (format "From: test@example.org\nSubject: %s\nMessage-ID: <%s@test>\n\nbody\n"
                              name name)
                      nil tmp nil 'silent))
      (rename-file tmp (expand-file-name name (expand-file-name "new" dir))))))

(defun mailsync-test--group (folder)
  "The Gnus group of FOLDER."
  (concat "nnmaildir+" mailsync-test--server ":" folder))

(defun mailsync-test--unread (folder)
  "The unread count Gnus shows for FOLDER."
  (gnus-group-unread (mailsync-test--group folder)))

(defun mailsync-test--wait-until (predicate seconds)
  "Let Emacs run until PREDICATE is true or SECONDS pass; return its value."
  (let ((deadline (+ (float-time) seconds))
        value)
    (while (and (not (setq value (funcall predicate)))
                (< (float-time) deadline))
      (accept-process-output nil 0.01))
    value))

(defun mailsync-test--start ()
  "Start mailsync and wait until every store is watched."
  (mailsync-start)
  (should (mailsync-test--wait-until #'mailsync--ready-p 10.0)))

(defun mailsync-test--idle (seconds)
  "Let Emacs run, handling process output, for SECONDS."
  (mailsync-test--wait-until #'ignore seconds))

(defun mailsync-test--record-check (groups)
  "In `mailsync-after-check-functions': remember GROUPS."
  (setq mailsync-test--checked (append mailsync-test--checked groups)))

(defun mailsync-test--checks-of (folder)
  "How many times FOLDER's group was checked."
  (cl-count (mailsync-test--group folder) mailsync-test--checked :test #'equal))

(defmacro mailsync-test--with-gnus-running (tmp method groups &rest body)
  "Run BODY with Gnus up in directory TMP, reading METHOD, GROUPS subscribed.
METHOD may also be a list of select methods.  Checks of groups are recorded in `mailsync-test--checked'.  Afterwards
mailsync stops and Gnus quits, leaving nothing behind."
  (declare (indent 3) (debug t))
  `(let* ((mailsync-test--checked nil)
          (mailsync-delay 0.05)
          (mailsync-check-on-start nil)
          (method ,method)
          ;; METHOD may also be a list of methods.
          (settings (mailsync-gnus-sandbox-settings
                     ,tmp (if (symbolp (car method)) (list method) method))))
     (cl-progv (mapcar #'car settings) (mapcar #'cdr settings)
     (unwind-protect
         (progn
           (mailsync-gnus-sandbox-open ,groups)
           (add-hook 'mailsync-after-check-functions #'mailsync-test--record-check)
           ,@body)
       (remove-hook 'mailsync-after-check-functions #'mailsync-test--record-check)
       (mailsync-stop)
       (let ((inhibit-message t)) (ignore-errors (gnus-group-quit)))
       (dolist (buffer (buffer-list))
         (when (string-match-p "\\`\\*\\(Group\\|Summary\\|Article\\|Server\\)" (buffer-name buffer))
           (kill-buffer buffer)))
       (setq gnus-newsrc-alist nil gnus-newsrc-hashtb nil gnus-active-hashtb nil)))))

(defmacro mailsync-test--with-gnus (folders &rest body)
  "Run BODY with Gnus up over an nnmaildir store of FOLDERS, mailsync off."
  (declare (indent 1) (debug t))
  `(let* ((mailsync-test--tmp (file-name-as-directory (make-temp-file "mailsync-test" t)))
          (mailsync-test--mail (expand-file-name "mail" mailsync-test--tmp))
          (default-directory mailsync-test--tmp)
          (mailsync-test--server (format "test%d" (cl-incf mailsync-test--servers)))
          (mailsync-maildirs nil))
     (unwind-protect
         (progn
           (dolist (folder ,folders) (mailsync-test--maildir folder))
           (mailsync-test--with-gnus-running mailsync-test--tmp
               (list 'nnmaildir mailsync-test--server (list 'directory mailsync-test--mail))
               (mapcar #'mailsync-test--group ,folders)
             ,@body))
       (delete-directory mailsync-test--tmp t))))

(ert-deftest mailsync-test-delivery-raises-unread-count ()
  "A delivery shows in Gnus's unread count within a second, unasked."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--start)
    (should (equal (mailsync-test--unread "work") 0))
    (mailsync-test--deliver "work")
    (should (mailsync-test--wait-until
             (lambda () (equal (mailsync-test--unread "work") 1)) 1.0))
    (should (equal (mailsync-test--unread "INBOX") 0))
    (should (equal mailsync-test--checked (list (mailsync-test--group "work"))))))

(ert-deftest mailsync-test-burst-gives-one-or-two-checks-per-folder ()
  "300 messages into 3 folders give one or two checks of each."
  (mailsync-test--with-gnus '("a" "b" "c")
    (let ((mailsync-delay 0.2))
      (mailsync-test--start)
      (dotimes (n 300)
        (mailsync-test--deliver (nth (% n 3) '("a" "b" "c"))))
      (should (mailsync-test--wait-until
               (lambda () (cl-every (lambda (f) (equal (mailsync-test--unread f) 100))
                                    '("a" "b" "c")))
               5.0))
      (mailsync-test--idle 0.5)
      (dolist (folder '("a" "b" "c"))
        (should (<= 1 (mailsync-test--checks-of folder) 2))))))

(ert-deftest mailsync-test-reading-a-group-triggers-no-check ()
  "Opening a group, reading and marking articles and exiting is not mail."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--deliver "work" 3)
    (let ((inhibit-message t)) (gnus-group-get-new-news))
    (mailsync-test--start)
    (let ((inhibit-message t))
      (gnus-group-read-group t t (mailsync-test--group "work"))
      (gnus-summary-first-subject)
      (gnus-summary-select-article)
      (gnus-summary-tick-article-forward 1)
      (gnus-summary-mark-as-read-forward 1)
      (gnus-summary-exit))
    (mailsync-test--idle 1.0)
    (should (null mailsync-test--checked))
    ;; And the watcher still works afterwards.
    (mailsync-test--deliver "INBOX")
    (should (mailsync-test--wait-until
             (lambda () (equal (mailsync-test--unread "INBOX") 1)) 1.0))))

(ert-deftest mailsync-test-checks-leave-point-marks-and-windows-alone ()
  "Checks keep the user's point, process marks, region, windows and lines."
  (mailsync-test--with-gnus '("INBOX" "shown" "marked")
    (let ((inhibit-message t))
      (switch-to-buffer gnus-group-buffer)
      (delete-other-windows)
      (gnus-group-goto-group (mailsync-test--group "marked"))
      (gnus-group-mark-group 1 nil t)
      (gnus-group-goto-group (mailsync-test--group "shown"))
      (forward-char 3)
      (split-window-below))
    (let* ((marked (copy-sequence gnus-group-marked))
           (point (point))
           (lines (count-lines (point-min) (point-max)))
           (windows (length (window-list)))
           (other-window-point (window-point (next-window))))
      (mailsync-test--start)
      (mailsync-test--deliver "shown")
      (mailsync-test--deliver "marked")
      (should (mailsync-test--wait-until
               (lambda () (and (equal (mailsync-test--unread "shown") 1)
                               (equal (mailsync-test--unread "marked") 1)))
               1.0))
      (should (equal (point) point))
      (should (equal gnus-group-marked marked))
      (should (save-excursion
                (gnus-group-goto-group (mailsync-test--group "marked"))
                (looking-at-p (format ".*%c" gnus-process-mark))))
      (should (equal (count-lines (point-min) (point-max)) lines))
      (should (equal (length (window-list)) windows))
      (should (equal (window-point (next-window)) other-window-point))
      (should-not (region-active-p)))))

(ert-deftest mailsync-test-typing-defers-the-check-until-idle ()
  "While input is pending the batch waits for an idle timer, then runs."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--start)
    (cl-letf (((symbol-function 'input-pending-p) (lambda (&rest _) t)))
      (mailsync-test--deliver "work")
      (should (mailsync-test--wait-until (lambda () (timerp mailsync--idle-timer)) 1.0))
      (should (equal (mapcar #'car mailsync--queue) (list (mailsync-test--group "work"))))
      (should (memq mailsync--idle-timer timer-idle-list))
      (should (equal (mailsync-test--unread "work") 0)))
    ;; Batch Emacs is never idle: run what the idle timer runs.
    (timer-event-handler mailsync--idle-timer)
    (should (equal (mailsync-test--unread "work") 1))
    (should (null mailsync--queue))
    (should (null mailsync--idle-timer))))

(ert-deftest mailsync-test-hidden-group-is-checked-without-showing-it ()
  "A group not shown in *Group* is checked and stays hidden."
  (mailsync-test--with-gnus '("INBOX" "quiet")
    (let ((inhibit-message t))
      (gnus-group-list-groups 1)) ; shows only groups with unread mail
    (with-current-buffer gnus-group-buffer
      (should-not (save-excursion (gnus-group-goto-group (mailsync-test--group "quiet"))))
      (let ((lines (count-lines (point-min) (point-max))))
        (mailsync-test--start)
        (mailsync-test--deliver "quiet" 2)
        (should (mailsync-test--wait-until
                 (lambda () (equal (mailsync-test--unread "quiet") 2)) 1.0))
        (should (equal (count-lines (point-min) (point-max)) lines))))))

(ert-deftest mailsync-test-start-is-idempotent-and-restartable ()
  "Start twice, stop, start again: one watch each time, mail still seen."
  (mailsync-test--with-gnus '("INBOX")
    (mailsync-test--start)
    (mailsync-test--start)
    (should (equal (length mailsync--watches) 1))
    (mailsync-stop)
    (should (null mailsync--watches))
    (mailsync-test--deliver "INBOX")
    (mailsync-test--idle 0.3)
    (should (null mailsync-test--checked))
    (mailsync-mode 1)
    (should (equal (length mailsync--watches) 1))
    (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
    (mailsync-test--deliver "INBOX")
    (should (mailsync-test--wait-until
             (lambda () (equal (mailsync-test--unread "INBOX") 2)) 1.0))
    (mailsync-mode -1)
    (should (null mailsync--watches))))

(ert-deftest mailsync-test-start-returns-at-once-and-says-when-ready ()
  "`mailsync-start' returns before the watches are set; then the store is ready.
Readiness reaches Emacs only through the wake-up pipe, so right after the
call it cannot have arrived yet; `mailsync-ready-functions' then run once."
  (mailsync-test--with-gnus '("INBOX" "work")
    (let* ((ready nil)
           (mailsync-ready-functions (list (lambda (directory) (push directory ready)))))
      (mailsync-start)
      (should-not (mailsync--ready-p))
      (mailsync-status)
      (should (string-match-p "STARTING" (with-current-buffer "*mailsync-status*" (buffer-string))))
      (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
      (mailsync-test--idle 0.2)
      (should (equal ready (list mailsync-test--mail)))
      (mailsync-test--deliver "work")
      (should (mailsync-test--wait-until
               (lambda () (equal (mailsync-test--unread "work") 1)) 1.0)))))

(defun mailsync-test--root-inotify-watches ()
  "How many inotify watches root's processes hold now."
  (let ((count 0))
    (dolist (pid (directory-files "/proc" nil "\\`[0-9]+\\'"))
      (let ((dir (format "/proc/%s/" pid)))
        (when (eql 0 (file-attribute-user-id (file-attributes dir)))
          (dolist (fd (ignore-errors (directory-files (concat dir "fd") nil "\\`[0-9]+\\'")))
            (when (equal (ignore-errors (file-symlink-p (format "%sfd/%s" dir fd)))
                         "anon_inode:inotify")
              (with-temp-buffer
                (ignore-errors (insert-file-contents (format "%sfdinfo/%s" dir fd)))
                (setq count (+ count (how-many "^inotify wd:" (point-min) (point-max))))))))))
    count))

(ert-deftest mailsync-test-watch-limit-at-start-stops-the-store-with-a-warning ()
  "A store the inotify watch limit cannot cover at start stops with a warning.
Needs root: it lowers fs.inotify.max_user_watches for a moment."
  (skip-unless (eql (user-uid) 0))
  (mailsync-test--with-gnus '("INBOX" "a" "b" "c")
    (let ((file "/proc/sys/fs/inotify/max_user_watches")
          (warnings nil)
          original)
      (setq original (with-temp-buffer (insert-file-contents file) (string-trim (buffer-string))))
      (cl-letf (((symbol-function 'display-warning)
                 (lambda (_type message &rest _) (push message warnings))))
        (unwind-protect
            (progn
              (write-region (format "%d" (+ (mailsync-test--root-inotify-watches) 4))
                            nil file nil 'silent)
              (mailsync-start)
              (should (mailsync-test--wait-until (lambda () warnings) 10.0)))
          (write-region original nil file nil 'silent)))
      (should (null mailsync--watches))
      (should (string-match-p "Cannot watch .*max_user_watches" (car warnings)))
      (should (string-match-p "Cannot watch" mailsync--last-error)))))

(ert-deftest mailsync-test-start-checks-every-group-once ()
  "With `mailsync-check-on-start', start-up checks each watched group."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--deliver "work")
    (let ((mailsync-check-on-start t))
      (mailsync-test--start))
    (should (mailsync-test--wait-until (lambda () (= (length mailsync-test--checked) 2)) 2.0))
    (should (equal (sort (copy-sequence mailsync-test--checked) #'string<)
                   (list (mailsync-test--group "INBOX") (mailsync-test--group "work"))))
    (should (equal (mailsync-test--unread "work") 1))))

(ert-deftest mailsync-test-start-check-goes-in-slices-and-emacs-answers-between ()
  "The start-up check of many groups runs in slices of time, after `mailsync-start'.
A slice takes groups until `mailsync-check-slice' has passed (here 1 ms:
one or a few groups), and a 5 ms timer keeps running between slices."
  (let ((folders (mapcar (lambda (n) (format "g%03d" n)) (number-sequence 1 120))))
    (mailsync-test--with-gnus folders
      (let ((mailsync-check-on-start t)
            (mailsync-check-slice 0.001)
            (batches nil)
            (ticks nil)
            (ticker nil))
        (add-hook 'mailsync-after-check-functions
                  (lambda (groups) (push (cons (float-time) (length groups)) batches)))
        (unwind-protect
            (progn
              (setq ticker (run-with-timer 0.005 0.005 (lambda () (push (float-time) ticks))))
              (mailsync-start)
              (should (null mailsync-test--checked)) ; nothing yet: start-up returned at once
              (should (mailsync-test--wait-until
                       (lambda () (= (length mailsync-test--checked) 120)) 30.0))
              (setq batches (nreverse batches))
              (should (cdr batches))
              (should (= (apply #'+ (mapcar #'cdr batches)) 120))
              (should (equal (sort (copy-sequence mailsync-test--checked) #'string<)
                             (mapcar #'mailsync-test--group folders)))
              ;; Emacs ran its own timers between the first batch and the last.
              (should (cl-some (lambda (tick) (< (car (car batches)) tick (car (car (last batches)))))
                               ticks)))
          (cancel-timer ticker)
          (setq mailsync-after-check-functions
                (cl-remove-if-not #'symbolp mailsync-after-check-functions)))))))

(defun mailsync-test--threads ()
  "How many threads this Emacs has."
  (length (directory-files "/proc/self/task" nil "\\`[0-9]")))

(defun mailsync-test--start-and-drop (dir process threads-before)
  "Start a watch of DIR waking PROCESS, then drop the handle.
Return non-nil when it ran more threads than THREADS-BEFORE."
  (let ((handle (mailsync--module-start dir process '(:delay-ms 0))))
    (and (plist-get (mailsync--module-stats handle) :running)
         (> (mailsync-test--threads) threads-before))))

(ert-deftest mailsync-test-garbage-collected-handle-ends-its-thread ()
  "Dropping a handle and collecting garbage stops and joins its threads."
  (mailsync--require-module)
  (let* ((dir (make-temp-file "mailsync-gc" t))
         (before (mailsync-test--threads))
         (process (make-pipe-process :name "mailsync-gc-test" :noquery t)))
    (unwind-protect
        (progn
          (dolist (sub '("cur" "new" "tmp")) (make-directory (expand-file-name sub dir)))
          (should (mailsync-test--start-and-drop dir process before))
          (garbage-collect)
          (should (mailsync-test--wait-until
                   (lambda () (= (mailsync-test--threads) before)) 2.0)))
      (delete-process process)
      (delete-directory dir t))))

;; The list of every folder found at start-up is as long as the store: only
;; the start-up check (`mailsync-check-on-start') asks for it.
(defun mailsync-test--ready-names (dir process options &optional groups)
  "Start the module on DIR waking PROCESS with OPTIONS; return its ready list.
With GROUPS, the list of their groups."
  (let ((handle (mailsync--module-start dir process options))
        start)
    (unwind-protect
        (progn
          (should (mailsync-test--wait-until
                   (lambda () (setq start (nth 2 (mailsync--module-poll handle))))
                   5.0))
          (should (eq (car start) 'ready))
          (sort (if groups (nth 2 start) (nth 1 start)) #'string<))
      (mailsync--module-stop handle))))

(ert-deftest mailsync-test-the-module-names-the-groups ()
  "Group names come from the module: :server's prefix, UTF-7 decoded for nnimap.
A store read by an nnimap server has names in modified UTF-7 on disk
unless its :utf7 says otherwise."
  (mailsync--require-module)
  (let ((dir (make-temp-file "mailsync-ready" t))
        (process (make-pipe-process :name "mailsync-ready-test" :noquery t))
        (options '(:layout "maildir++" :folders-at-start t)))
    (unwind-protect
        (progn
          (dolist (sub '("cur" "new" "tmp" ".Entw&APw-rfe/cur" ".Entw&APw-rfe/new" ".Entw&APw-rfe/tmp"))
            (make-directory (expand-file-name sub dir) t))
          (should (equal (mailsync-test--ready-names dir process (append '(:server "nnimap+local") options) t)
                         '("nnimap+local:Entwürfe" "nnimap+local:INBOX")))
          (should (equal (mailsync-test--ready-names dir process (append '(:server "nnimap+local" :utf7 nil) options) t)
                         '("nnimap+local:Entw&APw-rfe" "nnimap+local:INBOX")))
          (should (equal (mailsync-test--ready-names dir process (append '(:server "nnmaildir+m") options) t)
                         '("nnmaildir+m:Entw&APw-rfe" "nnmaildir+m:INBOX")))
          (should (equal (mailsync-test--ready-names dir process options t)
                         '("Entw&APw-rfe" "INBOX"))))
      (delete-process process)
      (delete-directory dir t))))

(ert-deftest mailsync-test-folders-at-start-only-when-asked ()
  "The module names the folders found at start-up only with :folders-at-start."
  (mailsync--require-module)
  (let ((dir (make-temp-file "mailsync-ready" t))
        (process (make-pipe-process :name "mailsync-ready-test" :noquery t)))
    (unwind-protect
        (progn
          (dolist (sub '("cur" "new" "tmp" ".work/cur" ".work/new" ".work/tmp"))
            (make-directory (expand-file-name sub dir) t))
          (should (equal (mailsync-test--ready-names
                          dir process '(:layout "maildir++" :folders-at-start t))
                         '("INBOX" "work")))
          (should (equal (mailsync-test--ready-names dir process '(:layout "maildir++"))
                         nil)))
      (delete-process process)
      (delete-directory dir t))))

(ert-deftest mailsync-test-missing-root-is-a-user-error ()
  "A missing maildir gives a `user-error' naming it."
  (let ((mailsync-maildirs '(("/nonexistent/mailsync-test" :server "nnmaildir+x"))))
    (let ((err (should-error (mailsync-start) :type 'user-error)))
      (should (string-match-p "/nonexistent/mailsync-test" (error-message-string err))))
    (should (null mailsync--watches))))

(ert-deftest mailsync-test-odd-folder-names-are-checked-not-evaluated ()
  "Quotes, backslashes, Lisp code and bytes that are not UTF-8 in names."
  (mailsync-test--with-gnus (cons "INBOX" mailsync-test--odd-folders)
    (mailsync-test--start)
    (dolist (folder mailsync-test--odd-folders)
      (mailsync-test--deliver folder))
    (should (mailsync-test--wait-until
             (lambda () (cl-every (lambda (f) (equal (mailsync-test--unread f) 1))
                                  mailsync-test--odd-folders))
             2.0))
    (dolist (folder mailsync-test--odd-folders)
      (should (member (mailsync-test--group folder) mailsync-test--checked)))
    (should-not (file-exists-p (expand-file-name "PWNED" mailsync-test--tmp)))))

(ert-deftest mailsync-test-rescan-rechecks-every-folder ()
  "`mailsync--module-rescan' (what an overflow does) checks every folder again."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--start)
    (mailsync--module-rescan (mailsync--watch-handle (car mailsync--watches)))
    (should (mailsync-test--wait-until
             (lambda () (= (length mailsync-test--checked) 2)) 1.0))))

(ert-deftest mailsync-test-overflow-rechecks-every-folder ()
  "A real inotify queue overflow: every folder is checked again.
The queue is 16 events long (fs.inotify.max_queued_events is lowered
while the store's watches are made, so this needs root); Emacs is
stopped while 300 messages land in one folder, and every other folder,
whose mail did not change, is checked too: the lost events are made up
for by a rescan."
  (skip-unless (eql (user-uid) 0))
  (let ((folders (cons "INBOX" (mapcar (lambda (n) (format "f%d" n)) (number-sequence 1 10))))
        (file "/proc/sys/fs/inotify/max_queued_events")
        original)
    (mailsync-test--with-gnus folders
      (setq original (with-temp-buffer (insert-file-contents file) (string-trim (buffer-string))))
      (unwind-protect
          (progn (write-region "16" nil file nil 'silent)
                 (mailsync-test--start))
        (write-region original nil file nil 'silent))
      (let ((dir (expand-file-name "f1" mailsync-test--mail)))
        (call-process "sh" nil nil nil "-c"
                      (format "trap 'kill -CONT %d' EXIT; kill -STOP %d
for n in $(seq 300); do printf 'Subject: flood\\n\\nbody\\n' > %s/tmp/flood.$n
mv %s/tmp/flood.$n %s/new/flood.$n; done"
                              (emacs-pid) (emacs-pid) (shell-quote-argument dir)
                              (shell-quote-argument dir) (shell-quote-argument dir))))
      (should (mailsync-test--wait-until
               (lambda () (cl-every (lambda (folder)
                                      (member (mailsync-test--group folder) mailsync-test--checked))
                                    folders))
               10.0))
      (should (equal (mailsync-test--unread "f1") 300)))))

(ert-deftest mailsync-test-status-and-log ()
  "`mailsync-status' shows the root and counters; the log is capped."
  (mailsync-test--with-gnus '("INBOX")
    (mailsync-test--start)
    (mailsync-test--deliver "INBOX")
    (should (mailsync-test--wait-until (lambda () mailsync-test--checked) 1.0))
    (mailsync-status)
    (with-current-buffer "*mailsync-status*"
      (should (string-match-p (regexp-quote mailsync-test--mail) (buffer-string)))
      (should (string-match-p "folder reports 1" (buffer-string))))
    (let ((mailsync-log-max-lines 5))
      (dotimes (n 20) (mailsync--log "line %d" n))
      (with-current-buffer "*mailsync-log*"
        (should (= (count-lines (point-min) (point-max)) 5))))))

(ert-deftest mailsync-test-seed-entry-point ()
  "`mailsync/gnus-check' checks the named groups, for emacsclient callers."
  (mailsync-test--with-gnus '("INBOX" "work")
    (mailsync-test--deliver "work" 2)
    (should (equal (mailsync/gnus-check (list (mailsync-test--group "work"))) 1))
    (should (equal (mailsync-test--unread "work") 2))))

(ert-deftest mailsync-test-module-errors-are-user-errors ()
  "What the module refuses comes back as a clear `user-error'."
  (let* ((dir (make-temp-file "mailsync-layout" t))
         (mailsync-maildirs `((,dir :server "nnmaildir+x" :layout mh))))
    (unwind-protect
        (let ((err (should-error (mailsync-start) :type 'user-error)))
          (should (string-match-p "Cannot watch .*: unknown layout .mh." (error-message-string err)))
          ;; The module's kinds of error are kinds of `mailsync-error'.
          (dolist (kind '(mailsync-setting-error mailsync-store-error))
            (should (memq 'mailsync-error (get kind 'error-conditions)))
            (should (memq 'user-error (get kind 'error-conditions))))
          (should (null mailsync--watches))
          (should-not (get-process "mailsync-wake")))
      (delete-directory dir t))))

;;;; Roots: one watch per store, all or none

(ert-deftest mailsync-test-one-store-spelled-three-ways-is-watched-once ()
  "The same maildir as /x, /x/, /y/../x and through a link gives one watch."
  (mailsync-test--with-gnus '("INBOX" "work")
    (let* ((link (expand-file-name "link" mailsync-test--tmp))
           (mailsync-maildirs
            (mapcar (lambda (dir) (list dir :server (concat "nnmaildir+" mailsync-test--server)
                                        :layout 'nnmaildir))
                    (list mailsync-test--mail
                          (file-name-as-directory mailsync-test--mail)
                          (expand-file-name "../mail" (expand-file-name "tmpdir-x" mailsync-test--tmp))
                          link))))
      (make-directory (expand-file-name "tmpdir-x" mailsync-test--tmp))
      (make-symbolic-link mailsync-test--mail link)
      (mailsync-test--start)
      (should (= (length mailsync--watches) 1))
      (mailsync-test--deliver "work")
      (should (mailsync-test--wait-until
               (lambda () (equal (mailsync-test--unread "work") 1)) 1.0))
      (mailsync-test--idle 0.3)
      (should (equal mailsync-test--checked (list (mailsync-test--group "work")))))))

(ert-deftest mailsync-test-nested-roots-and-files-are-refused ()
  "A root inside another is refused naming both; a file is not a directory."
  (let* ((dir (file-name-as-directory (make-temp-file "mailsync-roots" t)))
         (inner (expand-file-name "inner" dir))
         (file (expand-file-name "file" dir)))
    (unwind-protect
        (progn
          (make-directory inner)
          (write-region "" nil file nil 'silent)
          (let* ((mailsync-maildirs `((,dir :server "a") (,inner :server "b")))
                 (err (should-error (mailsync-start) :type 'user-error)))
            (should (string-match-p (regexp-quote inner) (error-message-string err)))
            (should (string-match-p (regexp-quote dir) (error-message-string err)))
            (should (null mailsync--watches)))
          (let* ((mailsync-maildirs `((,file :server "a")))
                 (err (should-error (mailsync-start) :type 'user-error)))
            (should (string-match-p "is not a directory" (error-message-string err)))))
      (mailsync-stop)
      (delete-directory dir t))))

(ert-deftest mailsync-test-one-bad-root-starts-none ()
  "With one bad root the mode stays off and no good root is watched.
Turned on from Lisp (an init file), that is a warning, and what follows
runs; turned on by a command, an error."
  (let* ((good (make-temp-file "mailsync-good" t))
         (mailsync-maildirs `((,good :server "nnmaildir+a")
                              ("/nonexistent/mailsync-test" :server "nnmaildir+b"))))
    (unwind-protect
        (progn
          (when (get-buffer "*Warnings*")
            (kill-buffer "*Warnings*"))
          (should (eq (progn (mailsync-mode 1) 'init-goes-on) 'init-goes-on))
          (with-current-buffer "*Warnings*"
            (should (string-match-p "mailsync-mode is off: Maildir /nonexistent/mailsync-test does not exist"
                                    (buffer-string))))
          (should-not mailsync-mode)
          (should-error (funcall-interactively #'mailsync-mode 1) :type 'user-error)
          (should-not mailsync-mode)
          (should (null mailsync--watches))
          (should-not (get-process "mailsync-wake"))
          ;; A root the module refuses, after a good one, undoes the good one too.
          (let ((bad (make-temp-file "mailsync-bad" t)))
            (unwind-protect
                (let ((mailsync-maildirs `((,good :server "nnmaildir+a")
                                           (,bad :server "nnmaildir+b" :layout mh))))
                  (should-error (funcall-interactively #'mailsync-mode 1) :type 'user-error)
                  (should-not mailsync-mode)
                  (should (null mailsync--watches))
                  (should-not (get-process "mailsync-wake")))
              (delete-directory bad t))))
      (mailsync-mode -1)
      (delete-directory good t))))

(ert-deftest mailsync-test-status-says-when-the-root-is-gone ()
  "A root moved away shows as missing in `mailsync-status', and comes back."
  (mailsync-test--with-gnus '("INBOX")
    (mailsync-test--start)
    (let ((away (concat mailsync-test--mail ".away")))
      (rename-file mailsync-test--mail away)
      (should (mailsync-test--wait-until
               (lambda () (plist-get (mailsync--module-stats
                                      (mailsync--watch-handle (car mailsync--watches)))
                                     :root-missing))
               2.0))
      (mailsync-status)
      (with-current-buffer "*mailsync-status*"
        (should (string-match-p "MISSING" (buffer-string))))
      (should (mailsync-test--wait-until
               (lambda () (string-match-p "removed or moved away" (or mailsync--last-error "")))
               2.0))
      (rename-file away mailsync-test--mail)
      (should (mailsync-test--wait-until
               (lambda () (not (plist-get (mailsync--module-stats
                                           (mailsync--watch-handle (car mailsync--watches)))
                                          :root-missing)))
               3.0))
      (mailsync-test--deliver "INBOX")
      (should (mailsync-test--wait-until
               (lambda () (equal (mailsync-test--unread "INBOX") 1)) 2.0)))))

;;;; Module missing

(ert-deftest mailsync-test-missing-module-says-how-to-build-it ()
  "Without the module next to it, `mailsync-start' says to build it."
  (let ((dir (make-temp-file "mailsync-nomodule" t)))
    (unwind-protect
        (progn
          (copy-file (locate-library "mailsync-gnus.el" t) (expand-file-name "mailsync-gnus.el" dir))
          (with-temp-buffer
            (call-process (expand-file-name invocation-name invocation-directory) nil t nil
                          "--batch" "-Q" "-L" dir "-l" "mailsync-gnus"
                          "--eval" "(condition-case err (mailsync-start) \
(user-error (princ (format \"user-error: %s\" (error-message-string err)))))")
            (should (string-match-p "user-error: The mailsync module .* is missing" (buffer-string)))
            (should (string-match-p "M-x mailsync-build-module" (buffer-string)))))
      (delete-directory dir t))))

;;;; Building the module with the command users run

(ert-deftest mailsync-test-build-module-command ()
  "`mailsync-build-module' in a tree without the module builds, loads and works.
The build reuses the repository's cargo target directory, so only mailsync
itself is compiled again."
  (let* ((tmp (file-name-as-directory (make-temp-file "mailsync-build" t)))
         (tree (expand-file-name "tree" tmp))
         (maildir (expand-file-name "Maildir" tmp))
         (process-environment
          (cons (concat "CARGO_TARGET_DIR=" (expand-file-name "target" mailsync-test--root))
                process-environment)))
    (unwind-protect
        (progn
          (make-directory tree)
          (dolist (file '("Cargo.toml" "Cargo.lock" "Makefile" "rustfmt.toml"
                          "mailsync-gnus.el" "mailsync-pkg.el"))
            (copy-file (expand-file-name file mailsync-test--root) (expand-file-name file tree)))
          (dolist (dir '("src" "scripts" "vendor"))
            (copy-directory (expand-file-name dir mailsync-test--root)
                            (expand-file-name dir tree) nil nil t))
          (dolist (sub '("cur" "new" "tmp"))
            (make-directory (expand-file-name sub maildir) t))
          (should-not (file-exists-p (expand-file-name "mailsync-gnus-module.so" tree)))
          (with-temp-buffer
            (call-process (expand-file-name invocation-name invocation-directory) nil t nil
                          "--batch" "-Q" "-L" tree
                          "-l" (expand-file-name "tests/build-module.el" mailsync-test--root)
                          maildir)
            (should (string-match-p "^loaded: t$" (buffer-string)))
            (should (string-match-p "^reported: (\"INBOX\")$" (buffer-string))))
          (should (file-exists-p (expand-file-name "mailsync-gnus-module.so" tree))))
      (delete-directory tmp t))))

(ert-deftest mailsync-test-build-module-without-cargo-says-what-to-install ()
  "Without cargo on `exec-path' the build command says to install Rust."
  (let* ((exec-path nil)
         (err (should-error (mailsync-build-module) :type 'user-error)))
    (should (string-match-p "Cargo is not on .exec-path.; install Rust" (error-message-string err)))))

;;;; A module of another interface

(ert-deftest mailsync-test-a-stale-module-says-rebuild-then-restart ()
  "A module whose interface differs is refused with what to do.
A stand-in for a module left by an older build: the real module, loaded
in a child Emacs, with its version function answering 1, as modules
built before versions existed are taken to be."
  (let ((dir (file-name-directory (locate-library "mailsync-gnus.el" t))))
    (with-temp-buffer
      (call-process (expand-file-name invocation-name invocation-directory) nil t nil
                    "--batch" "-Q" "-L" dir "-l" "mailsync-gnus"
                    "--eval" "(progn (mailsync--load-module) \
(fset 'mailsync--module-version (lambda () 1)) \
(condition-case err (mailsync-start) \
(user-error (princ (format \"user-error: %s\" (error-message-string err))))))")
      (should (string-match-p "user-error: The mailsync module .* has interface 1, this mailsync-gnus.el needs [0-9]+: rebuild it .*, then restart Emacs"
                              (buffer-string))))))

;; Versions and defaults: each is defined once (Cargo.toml, the engine),
;; and the places that must spell it too are checked against that here.
(ert-deftest mailsync-test-versions-and-defaults-agree-with-the-module ()
  "The Lisp header, mailsync-pkg.el and Cargo.toml carry the module's version.
The defaults the Lisp documents are those the module applies."
  (require 'lisp-mnt)
  (mailsync--require-module)
  (let ((defaults (mailsync--module-defaults))
        (cargo (with-temp-buffer
                 (insert-file-contents (expand-file-name "Cargo.toml" mailsync-test--root))
                 (re-search-forward "^version = \"\\([^\"]+\\)\"")
                 (match-string 1)))
        (pkg (with-temp-buffer
               (insert-file-contents (expand-file-name "mailsync-pkg.el" mailsync-test--root))
               (nth 2 (read (current-buffer))))))
    (should (equal (plist-get defaults :version) cargo))
    (should (equal (lm-version (expand-file-name "mailsync-gnus.el" mailsync-test--root)) cargo))
    (should (equal pkg cargo))
    (should (= (plist-get defaults :delay-ms)
               (round (* 1000 (eval (car (get 'mailsync-delay 'standard-value)) t)))))
    (mailsync-status)
    (with-current-buffer "*mailsync-status*"
      (should (string-match-p (format "module %s (interface %d); defaults: delay %d ms, %d IMAP connections, polls every %d s"
                                      cargo mailsync--module-version (plist-get defaults :delay-ms)
                                      (plist-get defaults :max-connections)
                                      (plist-get defaults :poll-seconds))
                              (buffer-string))))))

;;;; nnimap over a real Dovecot, its maildir watched on disk



(defun mailsync-test--dovecot (command dir)
  "Run scripts/dovecot.sh COMMAND DIR; return its output, trimmed."
  (with-temp-buffer
    (let ((status (call-process (expand-file-name "scripts/dovecot.sh" mailsync-test--root)
                                nil (list t nil) nil command dir)))
      (unless (eql status 0)
        (error "Dovecot %s failed: %s" command (buffer-string)))
      (string-trim (buffer-string)))))

(defun mailsync-test--over-dovecot (folders groups body)
  "Run BODY with Gnus on nnimap over a Dovecot whose maildir has FOLDERS.
FOLDERS are Maildir++ directory names as on disk; GROUPS the nnimap groups
to subscribe; mailsync watches the maildir for server nnimap+local."
  (let* ((tmp (file-name-as-directory (make-temp-file "mailsync-dovecot" t)))
         (server (expand-file-name "dovecot" tmp))
         (port (string-to-number (mailsync-test--dovecot "start" server)))
         (maildir (expand-file-name "mail" server))
         (mailsync-test--mail maildir)
         (authinfo (expand-file-name "authinfo" tmp))
         (auth-sources (list authinfo))
         (nsm-trust-local-network t)
         (mailsync-maildirs `((,maildir :server "nnimap+local" :layout maildir++))))
    (unwind-protect
        (progn
          (with-temp-file authinfo
            (insert (format "machine 127.0.0.1 port %d login test password secret\n" port)))
          (mapc #'mailsync-test--maildir folders)
          (when (zerop (user-uid))
            ;; Dovecot serves this maildir as nobody (scripts/dovecot.sh).
            (call-process "chown" nil nil nil "-R" "nobody:nogroup" maildir))
          (mailsync-test--with-gnus-running tmp
              `(nnimap "local" (nnimap-address "127.0.0.1") (nnimap-server-port ,port)
                       (nnimap-stream plain))
              groups
            (funcall body)))
      (mailsync-test--dovecot "remove" server)
      (delete-directory tmp t))))

(ert-deftest mailsync-test-nnimap-over-dovecot-delivery ()
  "Gnus over nnimap to a local Dovecot sees a delivery into Dovecot's maildir."
  (mailsync-test--over-dovecot
   '(".work") '("nnimap+local:INBOX" "nnimap+local:work")
   (lambda ()
     (should (equal (gnus-group-unread "nnimap+local:work") 0))
     (mailsync-test--start)
     (mailsync-test--deliver ".work")
     (should (mailsync-test--wait-until
              (lambda () (equal (gnus-group-unread "nnimap+local:work") 1)) 2.0))
     (should (equal mailsync-test--checked '("nnimap+local:work")))
     ;; Dovecot moving the message to cur/ and writing its indexes is no mail.
     (mailsync-test--idle 0.5)
     (should (equal mailsync-test--checked '("nnimap+local:work"))))))

(ert-deftest mailsync-test-dovecots-utf7-folders-check-the-unicode-groups ()
  "Folders Dovecot stores in modified UTF-7 check the groups Gnus names in Unicode.
Entwürfe is `.Entw&APw-rfe' on disk, 日本語 `.&ZeVnLIqe-', R&D `.R&-D'."
  (let ((pairs '((".Entw&APw-rfe" . "nnimap+local:Entwürfe")
                 (".&ZeVnLIqe-" . "nnimap+local:日本語")
                 (".R&-D" . "nnimap+local:R&D"))))
    (mailsync-test--over-dovecot
     (mapcar #'car pairs) (mapcar #'cdr pairs)
     (lambda ()
       ;; Gnus itself knows them under their Unicode names.
       (dolist (pair pairs)
         (should (equal (gnus-group-unread (cdr pair)) 0)))
       (mailsync-test--start)
       (dolist (pair pairs)
         (mailsync-test--deliver (car pair))
         (should (mailsync-test--wait-until
                  (lambda () (equal (gnus-group-unread (cdr pair)) 1)) 2.0)))
       (mailsync-test--idle 0.3)
       (should (equal mailsync-test--checked (mapcar #'cdr pairs)))))))

;;;; nnimap over TLS, watched over the network (no local sync)

(ert-deftest mailsync-test-imap-servers-picks-the-nnimap-servers-asked-for ()
  "Which nnimap servers `mailsync-imap-servers' watches, and how it reaches them."
  (let ((gnus-select-method '(nnimap "home" (nnimap-address "mail.home")))
        (gnus-secondary-select-methods
         '((nnimap "work" (nnimap-stream starttls) (nnimap-user "me"))
           (nnmaildir "local" (directory "/tmp"))
           (nnimap "gmail" (nnimap-address "imap.gmail.com") (nnimap-server-port "imaps"))))
        (mailsync-maildirs '(("/srv/work" :server "nnimap+work"))))
    ;; (setting, the group prefixes watched)
    (dolist (case '((nil nil)
                    (t ("" "nnimap+gmail"))
                    (("work") ("nnimap+work"))
                    (("nnimap+gmail" "nnimap:home") ("" "nnimap+gmail"))))
      (let ((mailsync-imap-servers (car case)))
        (should (equal (mapcar #'car (mailsync--imap-servers)) (cadr case)))))
    (let ((auth-sources nil))
      (should-error (mailsync--imap-account "nnimap+work" (nth 0 gnus-secondary-select-methods))
                    :type 'user-error))
    ;; (nnimap-stream, nnimap-server-port) → (TLS mode, port)
    (dolist (case '((ssl nil "imaps" 993) (starttls nil "starttls" 143) (plain "1143" "none" 1143)
                    (undecided "imaps" "imaps" 993) (network 143 "starttls" 143)))
      (let* ((auth-sources (list (make-temp-file "mailsync-authinfo" nil nil
                                                 "machine h login u password p\n")))
             (auth-source-do-cache nil)
             (method `(nnimap "x" (nnimap-address "h") (nnimap-stream ,(nth 0 case))
                              ,@(and (nth 1 case) `((nnimap-server-port ,(nth 1 case))))))
             (account (mailsync--imap-account "nnimap+x" method)))
        (delete-file (car auth-sources))
        (should (equal (list (plist-get account :tls) (plist-get account :port)) (cddr case)))
        (should (equal (plist-get account :user) "u"))
        (should (equal (plist-get account :password) "p"))))))

(defun mailsync-test--doveadm (server &rest args)
  "Run doveadm ARGS on the test Dovecot in SERVER; signal when it fails."
  (let ((status (apply #'call-process "doveadm" nil nil nil
                       "-c" (expand-file-name "dovecot.conf" server) args)))
    (unless (eql status 0)
      (error "Doveadm %S failed" args))))

(defun mailsync-test--save-on-server (server mailbox &optional subject)
  "Save a message into MAILBOX of the test Dovecot in SERVER, as a delivery does.
SUBJECT is its subject, MAILBOX by default."
  (let ((message (make-temp-file "mailsync-message")))
    (unwind-protect
        (progn
          (with-temp-file message
            (insert (format "From: test@example.org\nSubject: %s\nMessage-ID: <%d.%d@test>\n\nbody\n"
                            (or subject mailbox) (emacs-pid) (cl-incf mailsync-test--counter))))
          (let ((status (call-process "doveadm" message nil nil
                                      "-c" (expand-file-name "dovecot.conf" server)
                                      "save" "-u" "test" "-m" mailbox)))
            (unless (eql status 0)
              (error "Doveadm save into %s failed" mailbox))))
      (delete-file message))))

(defun mailsync-test--longest-gap-while (predicate seconds)
  "Run Emacs until PREDICATE holds (at most SECONDS) with a 10 ms timer.
Return (VALUE . GAP): PREDICATE's value and the longest time in seconds
between two runs of the timer, the longest Emacs could not answer, less
the time Emacs spent collecting garbage meanwhile (with Gnus loaded a
collection takes 40 ms here, and this loop's own polling causes them)."
  (let* ((last (float-time))
         (last-gc gc-elapsed)
         (gap 0.0)
         (timer (run-with-timer 0.01 0.01
                                (lambda ()
                                  (let ((now (float-time)))
                                    (setq gap (max gap (- now last (- gc-elapsed last-gc)))
                                          last now
                                          last-gc gc-elapsed)))))
         value)
    (unwind-protect
        (setq value (mailsync-test--wait-until predicate seconds))
      (cancel-timer timer))
    (message "mailsync-test: longest time Emacs did not answer: %.3f s" gap)
    (cons value gap)))

(defun mailsync-test--imap-stats ()
  "The module's counters of the one watched IMAP account."
  (mailsync--module-stats (mailsync--watch-handle (car mailsync--watches))))

(defmacro mailsync-test--watching-dovecot (spec &rest body)
  "Run BODY with Gnus reading a Dovecot, mailsync set to watch it over IMAP.
SPEC is (SERVER TLS MAILBOXES): SERVER is bound to Dovecot's directory;
TLS is scripts/dovecot.sh's TLS setting (\"1\": a certificate from a CA
the test makes; \"self\": a self-signed one; nil: plain text), its file
in `gnutls-trustfiles'; MAILBOXES are made besides INBOX, and all are
subscribed as nnimap+remote groups.  BODY sees `port' and `authinfo', the
auth-source file that holds the credentials."
  (declare (indent 1) (debug t))
  (pcase-let ((`(,server ,tls ,mailboxes) spec))
    `(let* ((tmp (file-name-as-directory (make-temp-file "mailsync-imap" t)))
            (,server (expand-file-name "dovecot" tmp))
            (tls ,tls)
            (port (let* ((process-environment (cons (concat "TLS=" (or tls "0")) process-environment))
                         (plain (mailsync-test--dovecot "start" ,server)))
                    (if tls
                        (with-temp-buffer
                          (insert-file-contents (expand-file-name "imaps-port" ,server))
                          (string-to-number (buffer-string)))
                      (string-to-number plain))))
            (authinfo (expand-file-name "authinfo" tmp))
            (auth-sources (list authinfo))
            (auth-source-do-cache nil)
            (gnutls-trustfiles (if tls
                                   (cons (expand-file-name "ca.pem" ,server) gnutls-trustfiles)
                                 gnutls-trustfiles))
            (nsm-trust-local-network t)
            (network-security-level 'low)
            (mailsync-maildirs nil)
            (mailsync-imap-servers t))
       (ignore authinfo)
       (unwind-protect
           (progn
             (with-temp-file authinfo
               (insert (format "machine 127.0.0.1 port %d login test password secret\n" port)))
             (dolist (mailbox ,mailboxes)
               (mailsync-test--doveadm ,server "mailbox" "create" "-u" "test" mailbox))
             (mailsync-test--with-gnus-running tmp
                 `(nnimap "remote" (nnimap-address "127.0.0.1") (nnimap-server-port ,port)
                          (nnimap-stream ,(if tls 'ssl 'plain)))
                 (mapcar (lambda (mailbox) (concat "nnimap+remote:" mailbox)) (cons "INBOX" ,mailboxes))
               ,@body))
         (mailsync-test--dovecot "remove" ,server)
         (delete-directory tmp t)))))

(defun mailsync-test--reconnected-answering (reconnects limit)
  "Assert the account is connected after RECONNECTS reconnects within LIMIT s.
Emacs answered its 10 ms timer throughout, within 50 ms."
  (let ((back (mailsync-test--longest-gap-while
               (lambda ()
                 (let ((stats (mailsync-test--imap-stats)))
                   (and (>= (plist-get stats :reconnects) reconnects)
                        (plist-get stats :connected))))
               limit)))
    (should (car back))
    (should (< (cdr back) 0.05))))

(ert-deftest mailsync-test-nnimap-account-watched-over-tls ()
  "A message saved on the server raises its nnimap group's unread count, unasked.
Gnus reads a Dovecot over TLS (a CA the test makes, in
`gnutls-trustfiles'), credentials from an auth-source file; mailsync
watches the account over the network (`mailsync-imap-servers' t, no
maildir).  Emacs keeps answering (a 10 ms timer) while the module
connects, and while it reconnects after Dovecot restarts and a kick."
  (mailsync-test--watching-dovecot (server "1" '("work"))
    (should (equal (gnus-group-unread "nnimap+remote:work") 0))
    (mailsync-start)
    (let ((started (mailsync-test--longest-gap-while #'mailsync--ready-p 10.0)))
      (should (car started))
      (should (< (cdr started) 0.05)))
    (should (string-match-p "NOTIFY" (plist-get (mailsync-test--imap-stats) :how)))
    (mailsync-test--save-on-server server "work")
    (should (mailsync-test--wait-until
             (lambda () (equal (gnus-group-unread "nnimap+remote:work") 1)) 5.0))
    (should (equal mailsync-test--checked '("nnimap+remote:work")))
    ;; The account is kicked, then Dovecot restarts: the module
    ;; reconnects on its threads; Emacs keeps its cadence.
    (mailsync-test--doveadm server "kick" "test")
    (mailsync-test--reconnected-answering 1 15.0)
    (mailsync-test--dovecot "restart" server)
    ;; Dovecot's old process may serve the connection a few seconds
    ;; more, then says goodbye: the module connects again.
    (mailsync-test--reconnected-answering 2 20.0)
    (mailsync-test--save-on-server server "work")
    (should (mailsync-test--wait-until
             (lambda () (equal (gnus-group-unread "nnimap+remote:work") 2)) 5.0))
    (mailsync-status)
    (with-current-buffer "*mailsync-status*"
      (should (string-match-p "nnimap\\+remote\n  connected: NOTIFY" (buffer-string)))
      (should-not (string-match-p "secret" (buffer-string))))))

(ert-deftest mailsync-test-nnimap-self-signed-certificate-in-gnutls-trustfiles ()
  "A self-signed server certificate in `gnutls-trustfiles' is trusted, as Gnus trusts it.
Made as users make theirs, by `openssl req -x509', which marks it CA:TRUE."
  (mailsync-test--watching-dovecot (server "self" '("work"))
    (mailsync-start)
    (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
    (should (plist-get (mailsync-test--imap-stats) :connected))
    (mailsync-test--save-on-server server "work")
    (should (mailsync-test--wait-until
             (lambda () (equal (gnus-group-unread "nnimap+remote:work") 1)) 5.0))))

(ert-deftest mailsync-test-nnimap-login-refused-after-start-stops-with-a-warning ()
  "A login the server refuses after the account was watched stops it for good.
As `mailsync idle' exits: one warning, the watch gone, no reconnecting
with a password the server refuses (which could lock the account)."
  (mailsync-test--watching-dovecot (server nil nil)
    (mailsync-start)
    (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
    (when (get-buffer "*Warnings*")
      (kill-buffer "*Warnings*"))
    ;; auth-source now holds a password the server refuses (as after
    ;; a password change); the connection is dropped.
    (with-temp-file authinfo
      (insert (format "machine 127.0.0.1 port %d login test password wrong\n" port)))
    (mailsync-test--doveadm server "kick" "test")
    (should (mailsync-test--wait-until
             (lambda () (not (cl-find "nnimap+remote" mailsync--watches
                                      :key #'mailsync--watch-name :test #'equal)))
             15.0))
    (with-current-buffer "*Warnings*"
      (should (string-match-p "Stopped watching nnimap\\+remote: .*refused the login"
                              (buffer-string))))
    (mailsync-status)
    (with-current-buffer "*mailsync-status*"
      (should-not (string-match-p "connecting again" (buffer-string))))))

(ert-deftest mailsync-test-nnimap-connections-and-poll-interval-reach-the-module ()
  "`mailsync-imap-max-connections' and `mailsync-imap-poll-interval' are used.
Against a Dovecot without NOTIFY and three mailboxes, two connections
give IDLE on one and STATUS polling of the two others; an impossible
value is refused in words that name the variable."
  (let ((process-environment
         (cons (concat "EXTRA_CONF=imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
                       "SORT THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS "
                       "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN "
                       "LIST-STATUS BINARY MOVE LITERAL+")
               process-environment))
        (mailsync-imap-max-connections 2)
        (mailsync-imap-poll-interval 7))
    (mailsync-test--watching-dovecot (server nil '("a" "b"))
      (mailsync-start)
      (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
      (should (equal (plist-get (mailsync-test--imap-stats) :how)
                     "IDLE on 1 connections, STATUS every 7 s for 2"))
      (mailsync-stop)
      (let ((mailsync-imap-max-connections 1))
        (should (equal (cadr (should-error (mailsync-start) :type 'user-error))
                       "Cannot watch nnimap+remote: mailsync-imap-max-connections is 1: give 2 to 1000"))))))

(defun mailsync-test--write-file (file text)
  "Make FILE hold TEXT."
  (with-temp-file file (insert text)))

(ert-deftest mailsync-test-nnimap-xoauth2-account-watched-with-fresh-tokens ()
  "An nnimap server with `nnimap-authenticator' `xoauth2' is watched.
Dovecot takes OAuth2 access tokens, checked by the test's introspection
server; auth-source gives the token, as Gnus itself uses it (Emacs 30).
When the token expires and the connection is made again, the module
asks Emacs for the password again: auth-source's cached token is refused,
so its cache is dropped and the fresh token read.  A second server whose
token is refused stops with one warning; the first goes on."
  (skip-unless (>= emacs-major-version 30))
  (let* ((tmp (file-name-as-directory (make-temp-file "mailsync-oauth" t)))
         (server (expand-file-name "dovecot" tmp))
         ;; Dovecot slows logins from an address whose logins failed
         ;; (2 s doubling to 15 s): this test takes 40 s.
         (process-environment (append '("TLS=1" "OAUTH2=1") process-environment))
         (_ (mailsync-test--dovecot "start" server))
         (port (with-temp-buffer
                 (insert-file-contents (expand-file-name "imaps-port" server))
                 (string-to-number (buffer-string))))
         (tokens (expand-file-name "tokens" server))
         (authinfo (expand-file-name "authinfo" tmp))
         (auth-sources (list authinfo))
         (auth-source-do-cache t)
         (gnutls-trustfiles (cons (expand-file-name "ca.pem" server) gnutls-trustfiles))
         (nsm-trust-local-network t)
         (network-security-level 'low)
         (mailsync-maildirs nil)
         (mailsync-imap-servers t)
         (warnings nil)
         (authinfo-text (lambda (token)
                          (format (concat "machine 127.0.0.1 port %d login test password %s\n"
                                          "machine localhost port %d login test password tok-b\n")
                                  port token port))))
    (unwind-protect
        (cl-letf (((symbol-function 'display-warning)
                   (lambda (_type message &rest _) (push message warnings))))
          (auth-source-forget-all-cached)
          (mailsync-test--write-file tokens "tok-1 test\ntok-b test\n")
          (mailsync-test--write-file authinfo (funcall authinfo-text "tok-1"))
          (mailsync-test--doveadm server "mailbox" "create" "-u" "test" "work")
          (mailsync-test--with-gnus-running tmp
              `((nnimap "remote" (nnimap-address "127.0.0.1") (nnimap-server-port ,port)
                        (nnimap-stream ssl) (nnimap-authenticator xoauth2))
                (nnimap "second" (nnimap-address "localhost") (nnimap-server-port ,port)
                        (nnimap-stream ssl) (nnimap-authenticator xoauth2)))
              '("nnimap+remote:INBOX" "nnimap+remote:work")
            ;; Gnus logged in to both with XOAUTH2; the second's token
            ;; expires before mailsync starts.
            (should (equal (gnus-group-unread "nnimap+remote:work") 0))
            (mailsync-test--write-file tokens "tok-1 test\n")
            (mailsync-start)
            (should (mailsync-test--wait-until
                     (lambda () (and warnings (mailsync--ready-p))) 40.0))
            (should (equal (mapcar #'mailsync--watch-name mailsync--watches)
                           '("nnimap+remote")))
            (should (= (length warnings) 1))
            (should (string-match-p "Cannot watch nnimap\\+second: .*refused a fresh token too"
                                    (car warnings)))
            (mailsync-test--save-on-server server "work")
            (should (mailsync-test--wait-until
                     (lambda () (equal (gnus-group-unread "nnimap+remote:work") 1)) 5.0))
            ;; The token expires; auth-source now holds a fresh one, but
            ;; its cache still has the old one.  A kick makes the module
            ;; log in again.
            (mailsync-test--write-file tokens "tok-2 test\n")
            (mailsync-test--write-file authinfo (funcall authinfo-text "tok-2"))
            (mailsync-test--doveadm server "kick" "test")
            (should (mailsync-test--wait-until
                     (lambda ()
                       (let ((stats (mailsync-test--imap-stats)))
                         (and (> (plist-get stats :reconnects) 0)
                              (plist-get stats :connected))))
                     30.0))
            (mailsync-test--save-on-server server "work")
            (should (mailsync-test--wait-until
                     (lambda () (equal (gnus-group-unread "nnimap+remote:work") 2)) 10.0))
            (let ((checks (with-temp-buffer
                            (insert-file-contents (expand-file-name "introspect.log" server))
                            (split-string (buffer-string) "\n" t))))
              (should (member "tok-1 inactive" checks))
              (should (member "tok-2 active" checks)))
            (mailsync-status)
            (with-current-buffer "*mailsync-status*"
              (should (string-match-p "nnimap\\+remote\n  connected: NOTIFY" (buffer-string)))
              (should-not (string-match-p "tok-" (buffer-string))))
            (with-current-buffer (get-buffer-create "*mailsync-log*")
              (should-not (string-match-p "tok-" (buffer-string))))))
      (auth-source-forget-all-cached)
      (mailsync-test--dovecot "remove" server)
      (delete-directory tmp t))))

(defun mailsync-test--file-text (file)
  "FILE's text, or \"\" when it does not exist."
  (if (file-exists-p file)
      (with-temp-buffer (insert-file-contents file) (buffer-string))
    ""))

(defun mailsync-test--write-run-config (tmp program)
  "Write TMP's mswatchrc: stores a and b watched by PROGRAM, syncs logged.
The sync program appends its arguments to TMP's syncs.log."
  (let ((script (expand-file-name "sync.sh" tmp)))
    (dolist (folder '("a/INBOX" "b/INBOX"))
      (dolist (sub '("cur" "new" "tmp"))
        (make-directory (expand-file-name sub (expand-file-name folder tmp)) t)))
    (mailsync-test--write-file script (format "#!/bin/sh\necho \"$*\" >> '%ssyncs.log'\n" tmp))
    (mailsync-test--write-file
     (expand-file-name "mswatchrc" tmp)
     (concat "base_delay 0\ninter_delay 0\n"
             (format "sync /bin/sh %s\nmailbox_prefix acct :\n" script)
             (format "store a {\n watch %s watch --maildir %sa --layout verbatim --delay 0\n}\n"
                     program tmp)
             (format "store b {\n watch %s watch --maildir %sb --layout verbatim --delay 0\n}\n"
                     program tmp)))))

(defmacro mailsync-test--with-no-store-in-gnus (bindings &rest body)
  "Run BODY with BINDINGS bound by `let*', and no mail store in Gnus.
Only a `mailsync run' child is then watched: no maildir, no IMAP server."
  (declare (indent 1) (debug t))
  `(let* (,@bindings
          (mailsync-maildirs nil)
          (mailsync-imap-servers nil)
          (gnus-secondary-select-methods nil)
          (gnus-select-method '(nnnil "")))
     ,@body))

(defmacro mailsync-test--with-run-config (spec &rest body)
  "Run BODY with `mailsync-run-config' set to a fresh configuration.
SPEC is (TMP CONFIG PROGRAM): the bound directory, the file in it, and
the mailsync binary that runs it (stores a and b, syncs logged in
TMP/syncs.log; see `mailsync-test--write-run-config').  Gnus watches
nothing else.  Afterwards `mailsync-mode' is off and TMP gone."
  (declare (indent 1) (debug t))
  (pcase-let ((`(,tmp ,config ,program) spec))
    `(mailsync-test--with-no-store-in-gnus
         ((,tmp (file-name-as-directory (make-temp-file "mailsync-run" t)))
          (,config (expand-file-name "mswatchrc" ,tmp))
          (,program (expand-file-name "target/release/mailsync" mailsync-test--root))
          (mailsync-program ,program)
          (mailsync-run-config ,config))
       (unwind-protect
           (progn
             (mailsync-test--write-run-config ,tmp ,program)
             ,@body)
         (mailsync-mode -1)
         (delete-directory ,tmp t)))))

(ert-deftest mailsync-test-run-config-runs-mailsync-run-and-starts-it-again ()
  "With `mailsync-run-config', `mailsync-mode' runs `mailsync run' as a child.
Its lines go to `*mailsync-log*'; a delivery into a watched store runs
the sync program; killed, it is started again; the mode stops it."
  (mailsync-test--with-run-config (tmp _config _program)
    (let ((log (expand-file-name "syncs.log" tmp))
          (mailsync-test--mail tmp))
      (unwind-protect
          (progn
            (mailsync-mode 1)
            (should (process-live-p mailsync--run))
            (should (mailsync-test--wait-until
                     (lambda () (string-match-p "^acct$" (mailsync-test--file-text log))) 10.0))
            (mailsync-test--deliver "a/INBOX")
            (should (mailsync-test--wait-until
                     (lambda () (string-match-p "^acct:INBOX$" (mailsync-test--file-text log))) 10.0))
            (should (mailsync-test--wait-until
                     (lambda () (with-current-buffer "*mailsync-log*"
                                  (string-match-p "mailsync run: sync INBOX: done" (buffer-string))))
                     5.0))
            (let ((first mailsync--run))
              (signal-process first 'SIGKILL)
              (should (mailsync-test--wait-until
                       (lambda () (and (= mailsync--run-restarts 1)
                                       (process-live-p mailsync--run)
                                       (not (eq mailsync--run first))))
                       10.0)))
            ;; Started again, it syncs everything once more.
            (should (mailsync-test--wait-until
                     (lambda () (= 2 (cl-count "acct" (split-string (mailsync-test--file-text log) "\n")
                                               :test #'equal)))
                     10.0))
            (mailsync-status)
            (with-current-buffer "*mailsync-status*"
              (should (string-match-p "mailsync run --config .*mswatchrc --print-synced\n  running, pid [0-9]+, started again 1 times"
                                      (buffer-string))))
            (let ((running mailsync--run))
              (mailsync-mode -1)
              (should-not (process-live-p running))
              (should-not mailsync--run)))
        (setq mailsync--run-restarts 0)))))

(ert-deftest mailsync-test-run-config-run-elsewhere-is-said-once-and-not-retried ()
  "A configuration that another `mailsync run' runs is not run twice.
The child of `mailsync-mode' exits 3; Emacs warns once, naming the
other run's pid, and does not start it again."
  (mailsync-test--with-run-config (tmp config program)
    ;; The other run, as from a terminal or a systemd unit: its first
    ;; sync shows it holds the configuration.
    (let ((other (make-process :name "other-run" :command (list program "run" "--config" config)
                               :connection-type 'pipe :noquery t :buffer nil)))
      (unwind-protect
          (progn
            (should (mailsync-test--wait-until
                     (lambda () (string-match-p "^acct$" (mailsync-test--file-text
                                                         (expand-file-name "syncs.log" tmp))))
                     10.0))
            (when (get-buffer "*Warnings*")
              (kill-buffer "*Warnings*"))
            (mailsync-mode 1)
            (should (mailsync-test--wait-until (lambda () (null mailsync--run)) 10.0))
            (with-current-buffer "*Warnings*"
              (let ((text (buffer-string))
                    (said (format "is already run by pid %d" (process-id other))))
                (should (string-match-p (regexp-quote said) text))
                (should (= 1 (cl-count-if (lambda (line) (string-search said line))
                                          (split-string text "\n"))))
                (should-not (string-match-p "Try 'mailsync" text))))
            (should (= mailsync--run-restarts 0))
            (should-not mailsync--run-timer)
            (should (process-live-p other)))
        (delete-process other)))))

;;;; Push sync for any mail reader: `mailsync-run-accounts' and the after-sync hook

(defconst mailsync-test--notmuch-lisp "/usr/share/emacs/site-lisp/elpa-src/notmuch-0.37"
  "notmuch's Emacs Lisp, as Debian 12's elpa-notmuch installs it (sources:
they load in every Emacs the tests run).")

(declare-function notmuch-search "notmuch")
(declare-function notmuch-refresh-all-buffers "notmuch")

(defun mailsync-test--write-mbsyncrc (home port local)
  "Write HOME/.mbsyncrc: channel test, Dovecot's PORT into LOCAL (Verbatim)."
  (with-temp-file (expand-file-name ".mbsyncrc" home)
    (insert (format "IMAPAccount test\nHost 127.0.0.1\nPort %d\nUser test\nPass secret\n\
SSLType None\nAuthMechs LOGIN\n\nIMAPStore test-remote\nAccount test\n\n\
MaildirStore test-local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n\
Channel test\nFar :test-remote:\nNear :test-local:\nPatterns *\nCreate Near\nSyncState *\n"
                    port local local))))

(defmacro mailsync-test--with-mbsync-channel (bindings &rest body)
  "Run BODY with a Dovecot and the mbsync channel test of ~/.mbsyncrc.
Bound for BODY: `tmp' (HOME), `server' (the Dovecot's directory) and
`local' (the channel's maildir, which its first sync makes), and
`mailsync-run-accounts' set to run the channel with this repository's
mailsync; then BINDINGS, by `let*'.  Afterwards `mailsync-mode' is off,
the Dovecot stopped and TMP gone."
  (declare (indent 1) (debug t))
  `(let* ((tmp (file-name-as-directory (make-temp-file "mailsync-channel" t)))
          (server (expand-file-name "dovecot" tmp))
          (port (string-to-number (mailsync-test--dovecot "start" server)))
          (local (expand-file-name "mail" tmp))
          ;; The child reads $HOME/.mbsyncrc, as a user's would be read.
          (process-environment (cons (concat "HOME=" tmp) process-environment))
          (mailsync-program (expand-file-name "target/release/mailsync" mailsync-test--root))
          (mailsync-run-accounts '((mbsync "test")))
          (mailsync-run-config nil)
          ,@bindings)
     (unwind-protect
         (progn
           (mailsync-test--write-mbsyncrc tmp port local)
           ,@body)
       (mailsync-mode -1)
       (mailsync-test--dovecot "remove" server)
       (delete-directory tmp t))))

(ert-deftest mailsync-test-run-accounts-a-store-the-first-sync-makes-is-watched-after-it ()
  "A store missing before the first sync is no error beside `mailsync run'.
From an init file, `mailsync-mode' with `mailsync-run-accounts' and a
maildir that the first sync makes: the mode stays on, no warning, the
child runs, and once it synced the store is watched and its folders
reported."
  (mailsync-test--with-mbsync-channel
      ((mailsync-maildirs `((,local :server "nnmaildir+work" :layout verbatim)))
       (mailsync-imap-servers nil)
       (mailsync-check-on-start nil)
       (changed nil)
       (mailsync-folder-changed-functions (list (lambda (_directory folders)
                                                  (setq changed (append folders changed))))))
    (when (get-buffer "*Warnings*")
      (kill-buffer "*Warnings*"))
    (mailsync-mode 1)
    (should mailsync-mode)
    (should (process-live-p mailsync--run))
    (should-not (get-buffer "*Warnings*"))
    (should (mailsync-test--wait-until (lambda () mailsync--watches) 30.0))
    (should-not mailsync--start-after-sync)
    (mailsync-test--save-on-server server "INBOX" "after the first sync")
    (should (mailsync-test--wait-until (lambda () (member "INBOX" changed)) 30.0))))

(ert-deftest mailsync-test-run-accounts-push-mail-that-notmuch-shows ()
  "`mailsync-run-accounts' pushes server mail into the maildir, notmuch shows it.
As the README's notmuch recipe: an mbsync channel read from ~/.mbsyncrc,
no mswatch configuration; `mailsync-run-then' runs notmuch new after
syncs; `mailsync-after-sync-functions' refreshes notmuch's buffers, with
no Gnus.  A notmuch search buffer open before a server delivery lists it
after, and the hook got the account and the folder."
  (skip-unless (file-directory-p mailsync-test--notmuch-lisp))
  (mailsync-test--with-no-store-in-gnus ()
    (mailsync-test--with-mbsync-channel
        ((notmuch-config (expand-file-name "notmuch-config" tmp))
         (process-environment (cons (concat "NOTMUCH_CONFIG=" notmuch-config) process-environment))
         (load-path (cons mailsync-test--notmuch-lisp load-path))
         (mailsync-run-then "notmuch new --quiet")
         (synced nil)
         (mailsync-after-sync-functions
          (list (lambda (account folders)
                  (push (cons account folders) synced)
                  (notmuch-refresh-all-buffers)))))
      (with-temp-file notmuch-config
        (insert (format "[database]\npath=%s\n[user]\nname=Test\nprimary_email=test@example.org\n" local)))
      (require 'notmuch)
      (mailsync-mode 1)
      ;; The start-up sync makes the store (it did not exist) and syncs everything.
      (should (mailsync-test--wait-until (lambda () (equal synced '(("test")))) 30.0))
      (notmuch-search "subject:pushed")
      (let ((buffer (current-buffer)))
        (should (mailsync-test--wait-until
                 (lambda () (with-current-buffer buffer
                              (string-match-p "End of search results" (buffer-string))))
                 10.0))
        (should-not (string-match-p "pushed to notmuch" (with-current-buffer buffer (buffer-string))))
        (mailsync-test--save-on-server server "INBOX" "pushed to notmuch")
        (should (mailsync-test--wait-until
                 (lambda () (with-current-buffer buffer
                              (string-match-p "pushed to notmuch" (buffer-string))))
                 30.0))
        (should (equal (car synced) '("test" "INBOX")))
        (kill-buffer buffer)))))

;; Debian 12's mu4e (package mu4e), loaded without site-start.
(defconst mailsync-test--mu4e-lisp "/usr/share/emacs/site-lisp/elpa-src/mu4e-1.8.14"
  "Where Debian's mu4e keeps its Lisp.")

(ert-deftest mailsync-test-run-accounts-push-mail-that-mu4e-indexes ()
  "The README's mu4e recipe: mu4e's index follows each sync.
mu4e runs, its mu server holding the index; `mailsync-run-accounts'
pushes a server delivery into the maildir, and the hook in
`mailsync-after-sync-functions' calls `mu4e-update-index' (nothing else
indexes here), after which mu finds the message."
  (skip-unless (and (file-directory-p mailsync-test--mu4e-lisp) (executable-find "mu")))
  (let ((load-path (cons mailsync-test--mu4e-lisp load-path)))
    (require 'mu4e))
  (mailsync-test--with-no-store-in-gnus ()
    (mailsync-test--with-mbsync-channel
        ((mailsync-run-then nil)
         (mu4e-mu-home (expand-file-name "mu" tmp))
         ;; Folders that exist, so that mu4e asks nothing.
         (mu4e-sent-folder "/INBOX")
         (mu4e-drafts-folder "/INBOX")
         (mu4e-trash-folder "/INBOX")
         (mu4e-refile-folder "/INBOX")
         (indexed 0)
         (count-index (lambda () (setq indexed (1+ indexed))))
         (synced nil)
         (mailsync-after-sync-functions
          (list (lambda (account folders) (push (cons account folders) synced))
                (lambda (&rest _) (mu4e-update-index))))
         (found (lambda (subject)
                  (with-temp-buffer
                    (and (eql 0 (call-process "mu" nil t nil "find" (concat "--muhome=" mu4e-mu-home)
                                              (concat "subject:" subject)))
                         (string-match-p subject (buffer-string)))))))
      (unwind-protect
          (progn
            (make-directory local t)
            (should (eql 0 (call-process "mu" nil nil nil "init" (concat "--muhome=" mu4e-mu-home)
                                         (concat "--maildir=" local) "--my-address=test@example.org")))
            (mailsync-mode 1)
            ;; The start-up sync fills the maildir; then mu4e starts (it
            ;; wants its folders to exist).
            (should (mailsync-test--wait-until (lambda () (equal synced '(("test")))) 30.0))
            (mu4e t)
            ;; mu4e's own first index (of an empty store) is done first.
            (add-hook 'mu4e-index-updated-hook count-index)
            (should (mailsync-test--wait-until (lambda () (> indexed 0)) 30.0))
            (setq indexed 0)
            (should-not (funcall found "pushed-to-mu4e"))
            (mailsync-test--save-on-server server "INBOX" "pushed-to-mu4e")
            ;; mu may find it before mu4e's index has said it completed.
            (should (mailsync-test--wait-until
                     (lambda () (and (> indexed 0) (funcall found "pushed-to-mu4e")))
                     30.0))
            (should (equal (car synced) '("test" "INBOX"))))
        (remove-hook 'mu4e-index-updated-hook count-index)
        (mu4e--stop)))))

(ert-deftest mailsync-test-run-accounts-configuration-error-is-said-once-and-not-retried ()
  "A channel ~/.mbsyncrc does not have is a configuration error: status 2.
`mailsync-mode' says it once in *Warnings*, without the command line's
hint, and does not start `mailsync run' again."
  (mailsync-test--with-no-store-in-gnus
      ((tmp (file-name-as-directory (make-temp-file "mailsync-accounts" t)))
       (process-environment (cons (concat "HOME=" tmp) process-environment))
       (mailsync-program (expand-file-name "target/release/mailsync" mailsync-test--root))
       (mailsync-run-accounts '((mbsync "nosuch")))
       (mailsync-run-config nil))
    (unwind-protect
        (progn
          (write-region "IMAPAccount other\nHost 127.0.0.1\nUser u\nPass p\n" nil
                        (expand-file-name ".mbsyncrc" tmp) nil 'silent)
          (when (get-buffer "*Warnings*")
            (kill-buffer "*Warnings*"))
          (mailsync-mode 1)
          (should (mailsync-test--wait-until (lambda () (null mailsync--run)) 10.0))
          (with-current-buffer "*Warnings*"
            (let ((text (buffer-string))
                  (said "no mbsync Channel or IMAPAccount named nosuch"))
              (should (= 1 (cl-count-if (lambda (line) (string-search said line))
                                        (split-string text "\n"))))
              (should-not (string-match-p "Try 'mailsync\\|--help" text))))
          (should (= mailsync--run-restarts 0))
          (should-not mailsync--run-timer))
      (mailsync-mode -1)
      (delete-directory tmp t))))

;;;; nnimap checks: no round trip when the server said enough, never SELECT or EXPUNGE

(defun mailsync-test--proxy (port rtt-ms log)
  "Start tests/latency-proxy.py to Dovecot's PORT, adding RTT-MS, logging to LOG.
Return (PROCESS . PROXY-PORT)."
  (let* ((buffer (generate-new-buffer " *mailsync-proxy*"))
         (process (make-process :name "mailsync-proxy" :buffer buffer :noquery t
                                :connection-type 'pipe
                                :command (list "python3"
                                               (expand-file-name "tests/latency-proxy.py"
                                                                 mailsync-test--root)
                                               (number-to-string port)
                                               (number-to-string rtt-ms) log "600"))))
    (should (mailsync-test--wait-until
             (lambda () (with-current-buffer buffer (string-match-p "\n" (buffer-string))))
             10.0))
    (cons process (with-current-buffer buffer (string-to-number (buffer-string))))))

(defun mailsync-test--wire (log connection)
  "The command names CONNECTION sent through the proxy, in order, per its LOG."
  (let (commands)
    (dolist (line (split-string (mailsync-test--file-text log) "\n" t))
      (let ((words (split-string line " " t)))
        (when (and (equal (car words) (number-to-string connection)) (nth 2 words))
          (push (upcase (concat (nth 2 words)
                                (if (equal (upcase (nth 2 words)) "UID")
                                    (concat " " (or (nth 3 words) ""))
                                  "")))
                commands))))
    (nreverse commands)))

(defun mailsync-test--checks-idle-p ()
  "Non-nil when every store is watched and no check waits or is under way."
  (and (mailsync--ready-p) (null mailsync--queue) (null mailsync--fetches)
       (not (timerp mailsync--check-timer))))

(defun mailsync-test--save-many (server mailbox count &optional subject)
  "Save COUNT messages into MAILBOX of the test Dovecot in SERVER.
SUBJECT, when given, is every message's subject."
  (dotimes (_ count)
    (mailsync-test--save-on-server server mailbox subject)))

(defun mailsync-test--messages-on-server (server mailbox query)
  "How many messages of MAILBOX on the test Dovecot in SERVER match QUERY."
  (with-temp-buffer
    (should (eql 0 (call-process "doveadm" nil t nil
                                 "-c" (expand-file-name "dovecot.conf" server)
                                 "search" "-u" "test" "mailbox" mailbox query)))
    (length (split-string (buffer-string) "\n" t))))

(defmacro mailsync-test--over-nnimap (spec &rest body)
  "Run BODY with Gnus reading a Dovecot over nnimap, mailsync watching it.
SPEC is (SERVER LOG MAILBOXES SUBSCRIBED &rest METHOD-SETTINGS): SERVER
and LOG are bound to Dovecot's directory and the proxy's log (Gnus and
the module reach Dovecot through a proxy adding 100 ms of round trip);
MAILBOXES are made on the server and the SUBSCRIBED ones read by Gnus as
nnimap+remote groups; METHOD-SETTINGS are added to the nnimap method."
  (declare (indent 1) (debug t))
  (pcase-let ((`(,server ,log ,mailboxes ,subscribed . ,settings) spec))
    `(let* ((tmp (file-name-as-directory (make-temp-file "mailsync-rtt" t)))
            (,server (expand-file-name "dovecot" tmp))
            (,log (expand-file-name "proxy.log" tmp))
            ;; Dovecot 2.3 now and then tells a NOTIFY client of a new message
            ;; only at its next periodic check (here about 1 delivery in 10 with
            ;; Gnus's session open; 30 s by default): every second here.
            (port (let ((process-environment
                         (cons "EXTRA_CONF=mailbox_idle_check_interval = 1 secs" process-environment)))
                    (string-to-number (mailsync-test--dovecot "start" ,server))))
            (proxy (mailsync-test--proxy port 100 ,log))
            (authinfo (expand-file-name "authinfo" tmp))
            (auth-sources (list authinfo))
            (auth-source-do-cache nil)
            (nsm-trust-local-network t)
            (mailsync-maildirs nil)
            (mailsync-imap-servers t))
       (unwind-protect
           (progn
             (mailsync-test--write-file
              authinfo (format "machine 127.0.0.1 port %d login test password secret\n" (cdr proxy)))
             (apply #'mailsync-test--doveadm ,server "mailbox" "create" "-u" "test" ,mailboxes)
             (mailsync-test--with-gnus-running tmp
                 (append (list 'nnimap "remote" '(nnimap-address "127.0.0.1")
                               (list 'nnimap-server-port (cdr proxy)) '(nnimap-stream plain))
                         ,(cons 'list settings))
                 (mapcar (lambda (mailbox) (concat "nnimap+remote:" mailbox)) ,subscribed)
               (condition-case failure
                   (progn ,@body)
                 (ert-test-failed
                  (copy-file ,log (expand-file-name "mailsync-last-proxy.log" temporary-file-directory) t)
                  (copy-file (expand-file-name "dovecot.log" (file-truename ,server))
                             (expand-file-name "mailsync-last-dovecot.log" temporary-file-directory) t)
                  (message "mailsync-test: the module's connection: %s"
                           (mapconcat #'identity
                                      (last (cl-remove-if-not (lambda (line) (string-prefix-p "2" line))
                                                              (split-string (mailsync-test--file-text ,log) "\n" t))
                                            30)
                                      "\n"))
                  (message "mailsync-test: the module says %S; *mailsync-log* at the failure:\n%s"
                           (and mailsync--watches
                                (mailsync--module-stats (mailsync--watch-handle (car mailsync--watches))))
                           (with-current-buffer (get-buffer-create "*mailsync-log*")
                             (replace-regexp-in-string ".* is not a Gnus group; not checked\n" ""
                                                       (buffer-string))))
                  (signal (car failure) (cdr failure))))))
         (delete-process (car proxy))
         (mailsync-test--dovecot "remove" ,server)
         (delete-directory tmp t)))))

(defvar mailsync-test--depth 0 "How deep checks are nested now.")
(defvar mailsync-test--deepest 0 "The deepest checks were nested.")

(defun mailsync-test--count-depth (function &rest args)
  "Call FUNCTION with ARGS, counting how deep checks nest."
  (let ((mailsync-test--depth (1+ mailsync-test--depth)))
    (setq mailsync-test--deepest (max mailsync-test--deepest mailsync-test--depth))
    (apply function args)))

(ert-deftest mailsync-test-nnimap-counts-rise-with-no-command-from-gnus ()
  "New mail raises nnimap counts from the server's status: Gnus sends nothing.
A real Dovecot 100 ms of round trip away (a proxy the test starts), 120
mailboxes, 60 subscribed, `mailsync-imap-servers' t, default settings.
The start-up check ends and asks only about groups that changed before
it (one bulk EXAMINE); six deliveries then raise six counts with no
command on Gnus's connection.  An expunge and a mailbox made anew take
the fallback and end with the right counts.  No check sends SELECT or
EXPUNGE (a message marked deleted by another client stays), and checks
never nest: a wake-up during one is merged into the next."
  (let* ((mailboxes (mapcar (lambda (n) (format "m%03d" n)) (number-sequence 1 120)))
         (subscribed (seq-take mailboxes 60))
         (group (lambda (mailbox) (concat "nnimap+remote:" mailbox)))
         (mailsync-test--deepest 0)
         (hook-runs 0)
         (count-hook (lambda () (cl-incf hook-runs))))
    (mailsync-test--over-nnimap (server log mailboxes subscribed)
      (advice-add 'mailsync--check-slice :around #'mailsync-test--count-depth)
      (advice-add 'mailsync--fetch-finish :around #'mailsync-test--count-depth)
      (add-hook 'gnus-after-getting-new-news-hook count-hook)
      (unwind-protect
          (let ((wire-at-start (length (mailsync-test--wire log 1)))
                ;; Default settings (the tests' own macro shortens the delay).
                (mailsync-delay (eval (car (get 'mailsync-delay 'standard-value)) t))
                (mailsync-check-on-start t))
            ;; Gnus read every group once (its first `g' SELECTs them).
            (should (equal (gnus-group-unread (funcall group "m001")) 0))
            ;; Mail that came before mailsync starts, for its start-up check:
            ;; m007's message marked deleted by another client.
            (mailsync-test--save-many server "m007" 1)
            (mailsync-test--doveadm server "flags" "add" "-u" "test" "\\Deleted" "mailbox" "m007" "all")
            (mailsync-test--save-many server "m008" 2)
            (mailsync-test--save-many server "m009" 2)
            (mailsync-start)
            (should (mailsync-test--wait-until #'mailsync-test--checks-idle-p 30.0))
            (should (equal (gnus-group-unread (funcall group "m008")) 2))
            (should (equal (gnus-group-unread (funcall group "m009")) 2))
            (let ((start-up (nthcdr wire-at-start (mailsync-test--wire log 1))))
              (should (member "EXAMINE" start-up))
              ;; One EXAMINE for each group that changed, none for the rest.
              (should (<= (cl-count "EXAMINE" start-up :test #'equal) 3)))
            ;; Gnus still answers: its own `g' comes back, and changes no count.
            (let ((inhibit-message t))
              (gnus-group-get-new-news))
            (should (equal (gnus-group-unread (funcall group "m008")) 2))
            ;; Six deliveries into six groups: no command from Gnus.
            (let ((wire-before (length (mailsync-test--wire log 1))))
              (dolist (mailbox '("m011" "m022" "m033" "m044" "m055" "m007"))
                (let ((before (gnus-group-unread (funcall group mailbox))))
                  (mailsync-test--save-many server mailbox 1)
                  (should (mailsync-test--wait-until
                           (lambda () (equal (gnus-group-unread (funcall group mailbox)) (1+ before)))
                           3.0))))
              (should (equal (nthcdr wire-before (mailsync-test--wire log 1)) nil)))
            (should (> hook-runs 0))
            ;; An expunge, and then new mail: the fallback, with the right count.
            (mailsync-test--doveadm server "expunge" "-u" "test" "mailbox" "m008" "uid" "1")
            (mailsync-test--save-many server "m008" 2)
            (should (mailsync-test--wait-until
                     (lambda () (equal (gnus-group-unread (funcall group "m008")) 3)) 5.0))
            ;; A mailbox made anew (a new UIDVALIDITY), with one message.
            (mailsync-test--doveadm server "mailbox" "delete" "-u" "test" "m009")
            (mailsync-test--doveadm server "mailbox" "create" "-u" "test" "m009")
            (mailsync-test--save-many server "m009" 1)
            (should (mailsync-test--wait-until
                     (lambda () (equal (gnus-group-unread (funcall group "m009")) 1)) 5.0))
            ;; A burst into one group while its check may be under way: merged.
            (mailsync-test--save-many server "m012" 3)
            (should (mailsync-test--wait-until
                     (lambda () (equal (gnus-group-unread (funcall group "m012")) 3)) 5.0))
            (should (mailsync-test--wait-until #'mailsync-test--checks-idle-p 10.0))
            (let ((checks (nthcdr wire-at-start (mailsync-test--wire log 1))))
              (message "mailsync-test: Gnus's commands during checks: %S" checks)
              (should-not (member "SELECT" checks))
              (should-not (member "EXPUNGE" checks))
              (should-not (member "UID EXPUNGE" checks)))
            (should (= 1 (mailsync-test--messages-on-server server "m007" "deleted")))
            (should (= mailsync-test--deepest 1)))
        (remove-hook 'gnus-after-getting-new-news-hook count-hook)
        (advice-remove 'mailsync--check-slice #'mailsync-test--count-depth)
        (advice-remove 'mailsync--fetch-finish #'mailsync-test--count-depth)))))

(ert-deftest mailsync-test-nnimap-split-inbox-is-still-split ()
  "New mail in an inbox that nnimap splits is split, and Gnus's hook runs.
The one check that must change the server: the user's own splitting."
  (let ((hook-runs 0))
    (mailsync-test--over-nnimap (server log '("work") '("INBOX" "work")
                                        '(nnimap-inbox "INBOX")
                                        '(nnimap-split-methods (("work" "^Subject: for work"))))
      (let ((count-hook (lambda () (cl-incf hook-runs)))
            (mailsync-check-on-start nil))
        (add-hook 'gnus-after-getting-new-news-hook count-hook)
        (unwind-protect
            (progn
              (mailsync-start)
              (should (mailsync-test--wait-until #'mailsync--ready-p 10.0))
              (setq hook-runs 0)
              (mailsync-test--save-many server "INBOX" 1 "for work")
              (should (mailsync-test--wait-until
                       (lambda () (equal (gnus-group-unread "nnimap+remote:work") 1)) 5.0))
              (should (= 0 (mailsync-test--messages-on-server server "INBOX" "all")))
              (should (> hook-runs 0)))
          (remove-hook 'gnus-after-getting-new-news-hook count-hook))))))

(provide 'mailsync-gnus-test)
;;; mailsync-gnus-test.el ends here
