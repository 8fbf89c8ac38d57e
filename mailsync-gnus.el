;;; mailsync-gnus.el --- Realtime mail for Gnus: check groups the moment mail lands  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The mailsync developers

;; Author: The mailsync developers
;; Maintainer: The mailsync developers
;; Version: 0.5.0
;; Package-Requires: ((emacs "28.1"))
;; Keywords: mail, news

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

;; mailsync watches your local maildirs with inotify, on background
;; threads of a Rust dynamic module (`mailsync-gnus-module'), and makes
;; Gnus check exactly the groups whose mail changed, at once: no polling
;; timer, and no work in Emacs while nothing happens.
;;
;; Quick start, in ~/.gnus.el:
;;
;;   (require 'mailsync-gnus)
;;   (mailsync-mode 1)
;;
;; With `mailsync-maildirs' nil, the directories of the nnmaildir servers
;; in your Gnus setup are watched.  For nnimap over a local Dovecot, say
;; which maildir backs which server:
;;
;;   (setq mailsync-maildirs
;;         '(("~/Maildir" :server "nnimap+local" :layout maildir++)))
;;
;; `M-x mailsync-status' shows what is watched; `*mailsync-log*' what
;; happened.  When the module is missing, `M-x mailsync-build-module'
;; builds it with cargo.
;;
;; `mailsync-gnus-check' (alias `mailsync/gnus-check', the name
;; rpatterson.mailsync 0.4 used) serves `emacsclient --eval' callers such
;; as `mailsync sync --check-local'.
;;
;; One file on purpose: `(require 'mailsync-gnus)' with this directory on
;; `load-path' is all a user needs.  Its parts, in order: options, the
;; module (loading, version, building), the log, watches, Gnus checks.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
;; Gnus's accessors are macros; Gnus itself is loaded only when it runs.
(eval-when-compile (require 'gnus))
(eval-when-compile (require 'nnimap))

(declare-function mailsync--module-version "mailsync-gnus-module")
(declare-function mailsync--module-start "mailsync-gnus-module")
(declare-function mailsync--module-watch-imap "mailsync-gnus-module")
(declare-function mailsync--module-give-secret "mailsync-gnus-module")
(declare-function auth-source-search "auth-source")
(declare-function auth-source-forget+ "auth-source")
(declare-function gnutls-trustfiles "gnutls")
(declare-function mailsync--module-poll "mailsync-gnus-module")
(declare-function mailsync--module-stop "mailsync-gnus-module")
(declare-function mailsync--module-stats "mailsync-gnus-module")
(declare-function gnus-alive-p "gnus-util")
(declare-function gnus-group-goto-group "gnus-group")
(declare-function gnus-group-get-new-news "gnus-group")
(declare-function gnus-group-get-new-news-this-group "gnus-group")
(declare-function gnus-group-update-group "gnus-group")
(declare-function gnus-find-method-for-group "gnus")
(declare-function gnus-activate-group "gnus-start")
(declare-function gnus-request-update-info "gnus-int")
(declare-function gnus-get-unread-articles-in-group "gnus-start")
(declare-function gnus-close-group "gnus-int")
(declare-function gnus-virtual-group-p "gnus")
(declare-function gnus-retrieve-group-data-early "gnus-int")
(declare-function gnus-finish-retrieve-group-infos "gnus-int")
(declare-function gnus-request-scan "gnus-int")
(declare-function gnus-method-to-server "gnus")
(declare-function gnus-group-remove-parameter "gnus")
(declare-function gnus-group-set-parameter "gnus")
(declare-function gnus-run-hooks "gnus-util")
(declare-function gnus-get-info "gnus")
(declare-function gnus-set-active "gnus")
(declare-function nnimap-open-server "nnimap")
(declare-function nnimap-find-process-buffer "nnimap")
(defvar gnus-group-buffer)
(defvar gnus-group-marked)
(defvar gnus-goto-next-group-when-activating)
(defvar gnus-select-method)
(defvar gnus-secondary-select-methods)

(when (version< emacs-version "28.1")
  (error "The mailsync package needs Emacs 28.1 or later (it has %s)" emacs-version))

;;;; Options

(defgroup mailsync nil
  "Realtime mail for Gnus: check groups the moment mail lands."
  :group 'gnus
  :prefix "mailsync-")

(defcustom mailsync-maildirs nil
  "The mail stores to watch, as a list of (DIRECTORY . PLIST).

PLIST keys:
  :server     Gnus server prefix of the store's groups, such as
              \"nnmaildir+local\" or \"nnimap+local\"; \"\" for the
              native select method.
  :layout     `maildir++', `verbatim' or `nnmaildir'; detected when absent.
  :inbox      name of the top folder (default \"INBOX\").
  :separator  between levels in group names (default \".\").
  :utf7       non-nil when folder names on disk are IMAP modified UTF-7
              (Dovecot's default); defaults to t for nnimap servers.
  :report-flags  non-nil to check a folder also when its messages only
              changed flags (a rename in cur/, a move from new/ to cur/).

When nil, the directories of the nnmaildir servers in `gnus-select-method'
and `gnus-secondary-select-methods' are watched."
  :type '(repeat (cons (directory :tag "Maildir")
                       (plist :tag "Options"
                              :options ((:server string)
                                        (:layout (choice (const maildir++)
                                                         (const verbatim)
                                                         (const nnmaildir)))
                                        (:inbox string)
                                        (:separator string)
                                        (:utf7 boolean)
                                        (:report-flags boolean))))))

(defcustom mailsync-imap-servers nil
  "Gnus nnimap servers to watch over the network, without a local sync.
nil watches none; t every nnimap server of `gnus-select-method' and
`gnus-secondary-select-methods' that no entry of `mailsync-maildirs'
covers (by its :server); or a list of server names, as \"work\" or
\"nnimap+work\".  Each server is watched as nnimap reaches it
\(`nnimap-address', `nnimap-server-port', `nnimap-stream', `nnimap-user',
the password from auth-source, the certificates of `gnutls-trustfiles'),
with NOTIFY where the server offers it, else IDLE and STATUS polling, on
the module's threads; a changed mailbox checks its group."
  :type '(choice (const :tag "None" nil)
                 (const :tag "Every nnimap server not watched on disk" t)
                 (repeat :tag "These servers" string)))

(defcustom mailsync-delay 0.2
  "Coalescing window in seconds.
Changes to one folder within this window give one check.  A folder that
keeps changing is still checked at least every `mailsync-max-delay'."
  :type 'number)

(defcustom mailsync-max-delay nil
  "Seconds at most before a folder that keeps changing is checked.
nil: ten times `mailsync-delay'."
  :type '(choice (const :tag "Ten times mailsync-delay" nil) number))

(defcustom mailsync-imap-max-connections nil
  "Connections at most to one server of `mailsync-imap-servers' without NOTIFY.
Without NOTIFY each mailbox is watched by IDLE on a connection of its
own, INBOX first, and the rest are polled on one more connection; Gmail
allows 15 per account.  nil: mailsync's default, which
`mailsync-status' shows."
  :type '(choice (const :tag "Default" nil) (integer :tag "Connections")))

(defcustom mailsync-imap-poll-interval nil
  "Seconds between polls of the mailboxes that have no IDLE connection.
For a server of `mailsync-imap-servers' without NOTIFY.  nil: mailsync's
default, which `mailsync-status' shows."
  :type '(choice (const :tag "Default" nil) (integer :tag "Seconds")))

(defcustom mailsync-folder-changed-functions (list #'mailsync-gnus-check-folders)
  "Functions called with (DIRECTORY FOLDERS) when mail changes.
DIRECTORY is the configured root (for an account of
`mailsync-imap-servers', its Gnus server prefix); FOLDERS the changed
folder names with the store's inbox name and separator, and no server
prefix.  The Gnus checker is the default member; other mail readers can
add theirs."
  :type 'hook)

(defcustom mailsync-check-on-start t
  "Non-nil means `mailsync-start' checks every watched group once.
The check runs in slices of `mailsync-check-slice' seconds on timers,
after `mailsync-start' has returned, so Emacs answers between slices.
An nnimap group whose count the server's status shows is right is not
asked about again."
  :type 'boolean)

(defcustom mailsync-check-slice 0.03
  "Seconds of Emacs's time one slice of checks may take, about.
Checks of many groups (the start-up check above all) go in slices; between
two, Emacs handles input, redisplay and its timers, and when the user is
typing the next slice waits until Emacs is idle.  A check never runs
inside another: changes reported meanwhile wait, merged, for the next."
  :type 'number)

(make-obsolete-variable 'mailsync-check-batch-size 'mailsync-check-slice "0.6")

(defcustom mailsync-ready-functions nil
  "Functions called with DIRECTORY once every folder of that store is watched.
`mailsync-start' returns at once; the watches are set on a thread of their
own, and mail delivered before this hook runs may not be reported (the
start-up check of `mailsync-check-on-start', which follows, sees it)."
  :type 'hook)

(defcustom mailsync-after-check-functions nil
  "Functions called with the list of groups after each Gnus check.
The groups are full Gnus group names, as asked to be checked (those Gnus
does not know are logged and skipped)."
  :type 'hook)

(defcustom mailsync-log-max-lines 1000
  "How many lines `*mailsync-log*' keeps."
  :type 'natnum)

(defcustom mailsync-run-config nil
  "An mswatch configuration for `mailsync run', or nil.
When set, `mailsync-mode' also runs \"mailsync run --config FILE\" as a
child process: it watches both mail stores (the server too, with
`mailsync idle') and runs the sync program when mail changes, so one
setting gives the whole chain, server to sync to maildir to Gnus.  Its
lines go to `*mailsync-log*'; it is started again when it dies (after 1 s,
doubling up to 5 minutes), and stopped with the mode."
  :type '(choice (const :tag "None" nil) file))

(defcustom mailsync-run-accounts nil
  "Accounts for `mailsync run' to push-sync, or nil.
Each element is (mbsync CHANNEL) or (offlineimap ACCOUNT).  An account's
two stores are read from the sync program's own configuration
\(~/.mbsyncrc, ~/.offlineimaprc), so no mswatch configuration is needed:
`mailsync-mode' runs \"mailsync run --mbsync CHANNEL...\" as a child
process, as it does for `mailsync-run-config' (which this replaces when
both are set), and a change on either side is synced within a second."
  :type '(repeat (choice (list :tag "mbsync channel" (const mbsync) string)
                         (list :tag "OfflineIMAP account" (const offlineimap) string))))

(defcustom mailsync-run-then nil
  "A shell command for `mailsync run' to run after syncs, or nil.
It runs once no other sync waits, with the synced folders as its
arguments: \"notmuch new\" or \"mu index\" keeps those readers' index up
to date.  `mailsync-after-sync-functions' run after it."
  :type '(choice (const :tag "None" nil) string))

(defcustom mailsync-after-sync-functions nil
  "Functions called after `mailsync run' synced mail, with no Gnus needed.
Each gets ACCOUNT, the account's name, and FOLDERS, the local names of
the folders synced (nil: every folder), once no other sync waits and
`mailsync-run-then' has ended: `notmuch-refresh-all-buffers' for
notmuch, or `mu4e-update-index' for mu4e (see the README)."
  :type 'hook)

(defcustom mailsync-program "mailsync"
  "The mailsync program that `mailsync-mode' runs as `mailsync run'."
  :type 'string)

;;;; The module

(defconst mailsync--directory
  (file-name-directory (or load-file-name buffer-file-name
                           (locate-library "mailsync-gnus")))
  "Where mailsync-gnus.el, and the module next to it, live.")

(defun mailsync--module-file ()
  "The file name of the dynamic module next to this file."
  (expand-file-name (concat "mailsync-gnus-module" module-file-suffix)
                    mailsync--directory))

(defun mailsync--load-module ()
  "Load the dynamic module; return non-nil when it is loaded."
  (or (featurep 'mailsync-gnus-module)
      (let ((file (mailsync--module-file)))
        (when (file-exists-p file)
          (module-load file)
          (featurep 'mailsync-gnus-module)))))

(defconst mailsync--module-version 7
  "The interface of the dynamic module this file talks to.
The module's `mailsync--module-version' must return the same number.")

(defun mailsync--module-version-loaded ()
  "The interface version of the loaded module; 1 for modules that had none."
  (if (fboundp 'mailsync--module-version) (mailsync--module-version) 1))

(defun mailsync--require-module ()
  "Load the dynamic module or signal a clear error.
A module of another interface version (an old build left by `git pull',
say) is refused with what to do: rebuild it, then restart Emacs, since
Emacs cannot unload a module."
  (unless module-file-suffix
    (user-error "This Emacs was built without dynamic module support, which mailsync needs"))
  (unless (mailsync--load-module)
    (user-error "The mailsync module %s is missing; build it with M-x mailsync-build-module (or `make' in %s)"
                (mailsync--module-file) mailsync--directory))
  (let ((loaded (mailsync--module-version-loaded)))
    (unless (eql loaded mailsync--module-version)
      (user-error "The mailsync module %s has interface %s, this mailsync-gnus.el needs %s: rebuild it (M-x mailsync-build-module, or `make'), then restart Emacs"
                  (mailsync--module-file) loaded mailsync--module-version))))

;;;###autoload
(defun mailsync-build-module ()
  "Build the mailsync dynamic module with cargo, in a compilation buffer.
The module is loaded when the build succeeds, unless an older one is
loaded already: Emacs cannot unload a module, so then restart Emacs."
  (interactive)
  (unless (executable-find "cargo")
    (user-error "Cargo is not on `exec-path'; install Rust (https://rustup.rs) first"))
  (unless (file-exists-p (expand-file-name "Cargo.toml" mailsync--directory))
    (user-error "%s is not a mailsync source tree; run `make install' in one instead"
                mailsync--directory))
  (let* ((default-directory mailsync--directory)
         (buffer (compile "make module")))
    (with-current-buffer buffer
      (add-hook 'compilation-finish-functions
                (lambda (_buffer status)
                  (cond
                   ((not (string-prefix-p "finished" status))
                    (message "mailsync: building the module failed: %s"
                             (string-trim status)))
                   ((featurep 'mailsync-gnus-module)
                    (message "mailsync: module built; restart Emacs to use it (the one loaded before stays until then)"))
                   ((and (mailsync--load-module)
                         (eql (mailsync--module-version-loaded) mailsync--module-version))
                    (message "mailsync: module built and loaded"))
                   (t (message "mailsync: module built, but %s does not load as interface %s"
                               (mailsync--module-file) mailsync--module-version))))
                nil t))))

;;;; Log

(defvar mailsync--last-error nil
  "The last error mailsync met, as a string.")

(defun mailsync--log (format-string &rest args)
  "Add a line made from FORMAT-STRING and ARGS to `*mailsync-log*'."
  (let ((line (apply #'format format-string args)))
    (with-current-buffer (get-buffer-create "*mailsync-log*")
      (let ((inhibit-read-only t))
        (goto-char (point-max))
        (insert (format-time-string "%F %T ") line "\n")
        (let ((excess (- (count-lines (point-min) (point-max))
                         mailsync-log-max-lines)))
          (when (> excess 0)
            (goto-char (point-min))
            (forward-line excess)
            (delete-region (point-min) (point))))))
    line))

(defun mailsync--error (format-string &rest args)
  "Log an error made from FORMAT-STRING and ARGS and remember it."
  (setq mailsync--last-error (apply #'mailsync--log format-string args)))

;;;; Watches

(cl-defstruct (mailsync--watch (:constructor mailsync--watch-create)
                               (:copier nil))
  "One watched mail store, or IMAP account.
NAME is what the user named it by: a store's root as configured, or an
IMAP account's Gnus server prefix (\"nnimap+work\").  TRUENAME is the
directory a store's root names, nil for an IMAP account.  READY is
non-nil once every folder is watched.  GROUPS maps each folder name the
module reported to its Gnus group, as the module names it."
  name truename plist handle process ready
  (groups (make-hash-table :test #'equal)))

(defvar mailsync--watches nil
  "The running watches, a list of `mailsync--watch'.")

(defvar mailsync--server-status (make-hash-table :test #'equal)
  "What the servers last said of each watched nnimap group.
GROUP -> (UIDVALIDITY UIDNEXT MESSAGES UNSEEN), from the module.")

(defvar mailsync--counters (list :wakeups 0 :checks 0 :own-time 0.0 :check-time 0.0)
  "What mailsync did: wake-ups, group checks, and seconds of Emacs's time.")

(defun mailsync--count (key amount)
  "Add AMOUNT to counter KEY of `mailsync--counters'."
  (setq mailsync--counters
        (plist-put mailsync--counters key (+ amount (plist-get mailsync--counters key)))))

(defun mailsync--gnus-methods (backend)
  "The select methods of the Gnus setup with BACKEND, as (PREFIX . METHOD).
PREFIX is their groups' prefix: \"BACKEND+NAME\", or \"\" for the native
method."
  (let (found)
    (dolist (method (cons (bound-and-true-p gnus-select-method)
                          (bound-and-true-p gnus-secondary-select-methods)))
      (when (and (consp method) (eq (car method) backend))
        (push (cons (if (eq method (bound-and-true-p gnus-select-method))
                        ""
                      (format "%s+%s" backend (cadr method)))
                    method)
              found)))
    (nreverse found)))

(defun mailsync--gnus-roots ()
  "The nnmaildir servers of the Gnus setup, as `mailsync-maildirs' entries."
  (let (roots)
    (pcase-dolist (`(,prefix . ,method) (mailsync--gnus-methods 'nnmaildir))
      (let ((directory (cadr (assq 'directory (cddr method)))))
        (when directory
          (push (list directory :server prefix :layout 'nnmaildir) roots))))
    (nreverse roots)))

(defun mailsync--roots ()
  "Return the maildirs to watch: `mailsync-maildirs' or Gnus's nnmaildir servers."
  (or mailsync-maildirs (mailsync--gnus-roots)))

(defun mailsync--folder-name (name)
  "Folder NAME from the module as a Lisp string.
The module hands finished names (inbox, separator, UTF-7 decoded), as
text when they are UTF-8 and as raw bytes otherwise, decoded here as
Emacs decodes file names."
  (if (multibyte-string-p name)
      name
    (decode-coding-string name (or file-name-coding-system 'utf-8-unix))))

(defun mailsync--remember-groups (watch folders groups)
  "Note in WATCH that FOLDERS have GROUPS, as the module named them."
  (cl-mapc (lambda (folder group) (puthash folder group (mailsync--watch-groups watch)))
           folders groups))

(defun mailsync--wake (watch)
  "Handle a wake-up from the module for WATCH: drain and dispatch.
Its time, less the Gnus checks it runs, counts as mailsync's own."
  (let* ((start (float-time))
         (check-time (plist-get mailsync--counters :check-time))
         (result (mailsync--module-poll (mailsync--watch-handle watch)))
         (folders (mapcar #'mailsync--folder-name (nth 0 result))))
    (mailsync--count :wakeups 1)
    (mailsync--remember-groups watch folders (mapcar #'mailsync--folder-name (nth 5 result)))
    (dolist (status (nth 4 result))
      (puthash (mailsync--folder-name (car status)) (cdr status) mailsync--server-status))
    (dolist (warning (nth 1 result))
      (mailsync--error "%s: %s" (mailsync--watch-name watch) warning))
    (pcase (nth 2 result)
      (`(ready ,names ,groups)
       (mailsync--remember-groups watch (mapcar #'mailsync--folder-name names)
                                  (mapcar #'mailsync--folder-name groups))
       (mailsync--on-ready watch (mapcar #'mailsync--folder-name groups)))
      (`(failed ,message) (mailsync--on-failed watch message)))
    (when (nth 3 result)
      (mailsync--give-secret watch (eq (nth 3 result) 'refused)))
    (when folders
      (mailsync--log "%s changed: %s" (mailsync--watch-name watch)
                     (mapconcat #'prin1-to-string folders " "))
      (dolist (function mailsync-folder-changed-functions)
        (condition-case err
            (funcall function (mailsync--watch-name watch) folders)
          (error (mailsync--error "%S failed: %s" function
                                  (error-message-string err))))))
    (mailsync--count :own-time (- (float-time) start
                                  (- (plist-get mailsync--counters :check-time) check-time)))))

(defun mailsync--on-ready (watch groups)
  "Every folder in WATCH's store is watched now: say so and check GROUPS.
GROUPS are those of every folder, when `mailsync-check-on-start' asked
for them."
  (let ((directory (mailsync--watch-name watch)))
    (setf (mailsync--watch-ready watch) t)
    (mailsync--log "watching %s: %d folders" directory
                   (or (plist-get (mailsync--module-stats (mailsync--watch-handle watch))
                                  :folders)
                       (length groups)))
    (cond (mailsync-check-on-start
           (mailsync--enqueue groups 'start))
          ((plist-get (mailsync--watch-plist watch) :imap)
           ;; No check, but each group's status is noted where Gnus's count
           ;; stands at it, so that the first change costs no round trip.
           (mailsync--enqueue groups 'note)))
    (run-hook-with-args 'mailsync-ready-functions directory)))

(defun mailsync--on-failed (watch message)
  "WATCH's store cannot be watched, for the reason MESSAGE: stop it and say so.
A watch that was ready stopped for good (a login the server now refuses):
nothing connects again until `mailsync-start'."
  (let ((directory (mailsync--watch-name watch))
        (what (if (mailsync--watch-ready watch) "Stopped watching" "Cannot watch")))
    (setq mailsync--watches (delq watch mailsync--watches))
    (mailsync--stop-watch watch)
    (mailsync--error "%s %s: %s" what directory message)
    (display-warning 'mailsync (format "%s %s: %s" what directory message) :error)))

(defun mailsync--ready-p ()
  "Non-nil when every started store is watched."
  (cl-every #'mailsync--watch-ready mailsync--watches))

(defun mailsync--truename (directory)
  "The true name of DIRECTORY, which must be an existing directory.
Signal a `user-error' naming it otherwise."
  (let ((root (expand-file-name directory)))
    (cond ((not (file-exists-p root))
           (user-error "Maildir %s does not exist" root))
          ((not (file-directory-p root))
           (user-error "Maildir %s is not a directory" root)))
    (directory-file-name (file-truename (file-name-as-directory root)))))

(defun mailsync--inside-p (inner outer)
  "Non-nil when directory INNER lies below directory OUTER (true names)."
  (string-prefix-p (file-name-as-directory outer) inner))

(defun mailsync--plan-watches (roots)
  "The entries of ROOTS to start, each as (DIRECTORY TRUENAME . PLIST).
Roots that name a store already watched, or named earlier in ROOTS, are
left out (the same maildir spelled two ways is watched once); a root
inside another is a `user-error' naming both."
  (let ((known (delq nil (mapcar (lambda (watch)
                                   (when (mailsync--watch-truename watch)
                                     (cons (mailsync--watch-truename watch)
                                           (mailsync--watch-name watch))))
                                 mailsync--watches)))
        planned)
    (dolist (root roots)
      (let* ((directory (car root))
             (truename (mailsync--truename directory))
             (same (assoc truename known)))
        (if same
            (unless (equal (cdr same) directory)
              (mailsync--log "%s is %s, already watched; watched once" directory (cdr same)))
          (dolist (other known)
            (cond ((mailsync--inside-p truename (car other))
                   (user-error "Maildir %s lies inside maildir %s: watch one of them"
                               directory (cdr other)))
                  ((mailsync--inside-p (car other) truename)
                   (user-error "Maildir %s lies inside maildir %s: watch one of them"
                               (cdr other) directory))))
          (push (cons truename directory) known)
          (push (cons directory (cons truename (cdr root))) planned))))
    (nreverse planned)))

(defun mailsync--new-watch (directory truename plist start)
  "Make the watch of DIRECTORY (true name TRUENAME, configured by PLIST).
START is called with the wake-up pipe and returns the module's handle.
Return the watch."
  (let ((watch (mailsync--watch-create :name directory :truename truename
                                       :plist plist)))
    (setf (mailsync--watch-process watch)
          (make-pipe-process :name "mailsync-wake" :noquery t :coding 'binary
                             :buffer nil
                             :filter (lambda (_process _output)
                                       (mailsync--wake watch))
                             :sentinel #'ignore))
    (condition-case err
        (setf (mailsync--watch-handle watch)
              (funcall start (mailsync--watch-process watch)))
      (mailsync-error (delete-process (mailsync--watch-process watch))
                      (user-error "Cannot watch %s: %s" directory (cadr err)))
      (error (delete-process (mailsync--watch-process watch))
             (signal (car err) (cdr err))))
    watch))

(defun mailsync--start-watch (directory truename plist)
  "Start watching DIRECTORY (true name TRUENAME), configured by PLIST.
Return the watch."
  (let ((layout (plist-get plist :layout)))
    (mailsync--new-watch
     directory truename plist
     (lambda (wake)
       (mailsync--module-start
        truename wake
        (append (list :layout (and layout (format "%s" layout))
                      :inbox (plist-get plist :inbox)
                      :separator (plist-get plist :separator)
                      :server (plist-get plist :server)
                      :report-flags (plist-get plist :report-flags)
                      :folders-at-start mailsync-check-on-start)
                ;; Absent, the module decides by :server.
                (and (plist-member plist :utf7) (list :utf7 (plist-get plist :utf7)))
                (mailsync--timing)))))))

(defun mailsync--timing ()
  "The module's coalescing options, from `mailsync-delay' and `mailsync-max-delay'."
  (list :delay-ms (max 0 (round (* 1000 mailsync-delay)))
        :max-delay-ms (and mailsync-max-delay (max 0 (round (* 1000 mailsync-max-delay))))))

;;;; IMAP accounts

(defun mailsync--nnimap-servers ()
  "The nnimap servers of the Gnus setup, as (PREFIX . METHOD)."
  (mailsync--gnus-methods 'nnimap))

(defun mailsync--imap-servers ()
  "The nnimap servers `mailsync-imap-servers' asks for, as (PREFIX . METHOD)."
  (let ((covered (mapcar (lambda (root) (plist-get (cdr root) :server))
                         mailsync-maildirs)))
    (cl-remove-if-not
     (lambda (server)
       (pcase mailsync-imap-servers
         ('nil nil)
         ('t (not (member (car server) covered)))
         (names (let ((name (cadr (cdr server))))
                  (cl-some (lambda (wanted)
                             (member wanted (list name (car server)
                                                  (concat "nnimap:" name))))
                           names)))))
     (mailsync--nnimap-servers))))

(defun mailsync--nnimap-setting (method variable default)
  "The value of nnimap VARIABLE in server METHOD, else DEFAULT."
  (let ((setting (assq variable (cddr method))))
    (if setting (cadr setting) default)))

(defun mailsync--imap-port (port tls)
  "PORT (a number, a service name or nil) as a number for TLS mode TLS."
  (cond ((numberp port) port)
        ((and (stringp port) (string-match-p "\\`[0-9]+\\'" port)) (string-to-number port))
        ((member port '("imaps" "993")) 993)
        ((member port '("imap" "143")) 143)
        ((equal tls "imaps") 993)
        (t 143)))

(defun mailsync--imap-name (prefix)
  "How messages name the nnimap server of groups with PREFIX."
  (if (string-empty-p prefix) "nnimap" prefix))

(defun mailsync--imap-endpoint (prefix method)
  "Where nnimap server METHOD, group prefix PREFIX, is.
Return (ADDRESS PORT TLS GIVEN-PORT), the settings as nnimap takes them:
TLS is \"imaps\", \"starttls\" or \"none\", GIVEN-PORT is
`nnimap-server-port'."
  (let* ((address (mailsync--nnimap-setting method 'nnimap-address (cadr method)))
         (stream (mailsync--nnimap-setting method 'nnimap-stream 'undecided))
         (given-port (mailsync--nnimap-setting method 'nnimap-server-port nil))
         (tls (pcase stream
                ((or 'ssl 'tls) "imaps")
                ((or 'network 'starttls) "starttls")
                ('plain "none")
                ('undecided (if (member given-port '(nil 993 "993" "imaps")) "imaps" "starttls"))
                (_ (user-error "Cannot watch %s: nnimap-stream %s is not supported"
                               (mailsync--imap-name prefix) stream)))))
    (list address (mailsync--imap-port given-port tls) tls given-port)))

(defun mailsync--imap-credentials (prefix method &optional forget)
  "The user and password of nnimap server METHOD, as (USER . SECRET).
PREFIX is its groups' prefix.  They come from auth-source, searched as
nnimap searches it; with `nnimap-authenticator' `xoauth2' the secret is
the OAuth2 access token.  With FORGET non-nil, what auth-source has
cached for the server is dropped first (the last secret was refused)."
  (require 'auth-source)
  (pcase-let* ((`(,address ,port ,_tls ,given-port) (mailsync--imap-endpoint prefix method))
               (user (mailsync--nnimap-setting method 'nnimap-user nil)))
    (when forget
      (auth-source-forget+ :host address))
    (let* ((found (car (auth-source-search
                        :max 1 :host address
                        :port (list (number-to-string port) (format "%s" (or given-port port))
                                    "imap" "imaps" "143" "993")
                        :user user :require '(:user :secret))))
           (secret (plist-get found :secret)))
      (unless found
        (user-error "Cannot watch %s: auth-source has no password for %s port %d"
                    (mailsync--imap-name prefix) address port))
      (cons (or user (plist-get found :user))
            (if (functionp secret) (funcall secret) secret)))))

(defun mailsync--imap-auth (prefix method)
  "The module's :auth for nnimap server METHOD, from `nnimap-authenticator'.
PREFIX is its groups' prefix."
  (let ((authenticator (mailsync--nnimap-setting method 'nnimap-authenticator nil)))
    (pcase authenticator
      ('nil nil)
      ((or 'xoauth2 'plain 'login) (symbol-name authenticator))
      (_ (user-error "Cannot watch %s: nnimap-authenticator %s is not supported (xoauth2, plain or login)"
                     (mailsync--imap-name prefix) authenticator)))))

(defun mailsync--imap-account (prefix method)
  "The module's account plist for nnimap server METHOD, group prefix PREFIX.
Settings as nnimap takes them; the password from auth-source."
  (require 'gnutls)
  (pcase-let ((`(,address ,port ,tls ,_) (mailsync--imap-endpoint prefix method))
              (`(,user . ,secret) (mailsync--imap-credentials prefix method)))
    (append
     (list :label (if (string-empty-p prefix) (format "nnimap:%s" (cadr method)) prefix)
          :server prefix
          :host address :port port :tls tls :user user :password secret
          :auth (mailsync--imap-auth prefix method)
          :ca-files (and (fboundp 'gnutls-trustfiles) (gnutls-trustfiles))
          :max-connections mailsync-imap-max-connections
          :poll-seconds mailsync-imap-poll-interval)
     (mailsync--timing))))

(defun mailsync--start-imap-watch (prefix method)
  "Start watching nnimap server METHOD, whose groups have PREFIX.
Return the watch; its DIRECTORY is PREFIX."
  (let ((account (mailsync--imap-account prefix method)))
    (mailsync--new-watch prefix nil (list :server prefix :imap t :method method)
                         (lambda (wake) (mailsync--module-watch-imap wake account)))))

(defun mailsync--give-secret (watch refused)
  "Give WATCH's IMAP account its password again, for a new login.
REFUSED non-nil means the last one was refused (an expired token): what
auth-source cached is not used then."
  (let* ((plist (mailsync--watch-plist watch))
         (secret (condition-case err
                     (cdr (mailsync--imap-credentials (plist-get plist :server)
                                                      (plist-get plist :method)
                                                      refused))
                   (error (mailsync--error "%s: %s" (mailsync--watch-name watch)
                                           (error-message-string err))
                          nil))))
    (mailsync--log "%s: logging in again, %s" (mailsync--watch-name watch)
                   (if secret "with the password from auth-source" "but auth-source has none"))
    (mailsync--module-give-secret (mailsync--watch-handle watch) secret)))

(defun mailsync--stop-watch (watch)
  "Stop WATCH: its thread, its descriptors and its wake-up pipe."
  (when (mailsync--watch-handle watch)
    (mailsync--module-stop (mailsync--watch-handle watch)))
  (delete-process (mailsync--watch-process watch)))

;;;###autoload
(defun mailsync-start ()
  "Watch the maildirs of `mailsync-maildirs' and check changed groups.
Stores already watched are left as they are.  A store that is missing,
or lies inside another, is an error, and then none starts.  Otherwise
this returns at once: each store's watches are set on a thread of its
own, and when they are, `mailsync-ready-functions' run and every group
of the store is checked once (when `mailsync-check-on-start' is non-nil
and Gnus runs).  A store that cannot be watched then (the inotify watch
limit) is stopped with a warning."
  (interactive)
  (mailsync--require-module)
  (let ((roots (mailsync--roots))
        (servers (mailsync--imap-servers))
        started)
    (unless (or roots servers)
      (user-error "Nothing to watch: set `mailsync-maildirs' or `mailsync-imap-servers', or add an nnmaildir server to Gnus"))
    (condition-case err
        (progn
          (dolist (root (mailsync--plan-watches roots))
            (push (mailsync--start-watch (nth 0 root) (nth 1 root) (nthcdr 2 root)) started))
          (dolist (server servers)
            (unless (cl-find (car server) mailsync--watches
                             :key #'mailsync--watch-name :test #'equal)
              (push (mailsync--start-imap-watch (car server) (cdr server)) started))))
      (error (mapc #'mailsync--stop-watch started)
             (signal (car err) (cdr err))))
    (setq started (nreverse started))
    (dolist (watch started)
      (mailsync--log "starting to watch %s" (mailsync--watch-name watch)))
    (setq mailsync--watches (append mailsync--watches started))
    (when (called-interactively-p 'interactive)
      (message "mailsync: watching %d store%s" (length mailsync--watches)
               (if (cdr mailsync--watches) "s" "")))
    mailsync--watches))

;;;###autoload
(defun mailsync-stop ()
  "Stop watching every mail store."
  (interactive)
  (dolist (watch mailsync--watches)
    (mailsync--stop-watch watch)
    (mailsync--log "stopped watching %s" (mailsync--watch-name watch)))
  (setq mailsync--watches nil)
  (mailsync--forget-checks))

(defvar mailsync--start-after-sync nil
  "Non-nil when the stores could not be watched before `mailsync run' synced.")

;;;###autoload
(define-minor-mode mailsync-mode
  "Check Gnus groups the moment their mail changes on disk.
With `mailsync-run-accounts' or `mailsync-run-config' set, also run
`mailsync run', which syncs the mail stores when they change.  Turned on
from an init file, what stops it is a warning, not an error."
  :global t
  :group 'mailsync
  (if mailsync-mode
      (condition-case err
          (if (not (mailsync--run-arguments))
              (mailsync-start)
            (mailsync--run-start)
            ;; With `mailsync run' alone, nothing else need be watched.
            (when (or (mailsync--roots) (mailsync--imap-servers))
              (mailsync--start-beside-run)))
        (error (setq mailsync-mode nil)
               (mailsync--run-stop)
               ;; From an init file: a warning, and the rest of it runs.
               (if (called-interactively-p 'any)
                   (signal (car err) (cdr err))
                 (display-warning 'mailsync
                                  (format "mailsync-mode is off: %s" (error-message-string err))
                                  :error))))
    (setq mailsync--start-after-sync nil)
    (mailsync-stop)
    (mailsync--run-stop)))

;;;###autoload
(defun mailsync-status ()
  "Show what mailsync watches and what it did."
  (interactive)
  (with-current-buffer (get-buffer-create "*mailsync-status*")
    (let ((inhibit-read-only t))
      (erase-buffer)
      (insert (format "mailsync: %s\n"
                      (if mailsync--watches "running" "stopped")))
      (when (fboundp 'mailsync--module-defaults)
        (let ((defaults (mailsync--module-defaults)))
          (insert (format "module %s (interface %s); defaults: delay %d ms, %d IMAP connections, polls every %d s\n"
                          (plist-get defaults :version) (mailsync--module-version-loaded)
                          (plist-get defaults :delay-ms) (plist-get defaults :max-connections)
                          (plist-get defaults :poll-seconds)))))
      (insert "\n")
      (mailsync--insert-run-status)
      (dolist (watch mailsync--watches)
        (let ((stats (mailsync--module-stats (mailsync--watch-handle watch)))
              (plist (mailsync--watch-plist watch)))
          (insert (format "%s\n" (mailsync--watch-name watch)))
          (if (plist-get stats :imap)
              (mailsync--insert-imap-status watch stats)
            (mailsync--insert-maildir-status watch plist stats))))
      (insert (format "\nwake-ups %d, group checks %d\n"
                      (plist-get mailsync--counters :wakeups)
                      (plist-get mailsync--counters :checks)))
      (insert (format "Emacs time: mailsync %.3f s, Gnus checks %.3f s\n"
                      (plist-get mailsync--counters :own-time)
                      (plist-get mailsync--counters :check-time)))
      (insert (format "last error: %s\n" (or mailsync--last-error "none")))
      (special-mode))
    (display-buffer (current-buffer))))

(defun mailsync--insert-imap-status (watch stats)
  "Insert the state of IMAP account WATCH, whose module STATS are given."
  (cond ((not (mailsync--watch-ready watch))
         (insert "  STARTING: connecting and listing the mailboxes\n"))
        ((plist-get stats :connected)
         (insert (format "  connected: %s\n" (or (plist-get stats :how) "watching"))))
        (t (insert "  NOT CONNECTED: connecting again\n")))
  (insert (format "  mailboxes %d, connections lost %d\n"
                  (plist-get stats :mailboxes) (plist-get stats :reconnects)))
  (when (plist-get stats :last-error)
    (insert (format "  last connection error: %s\n" (plist-get stats :last-error)))))

(defun mailsync--insert-maildir-status (watch plist stats)
  "Insert the state of maildir WATCH, configured by PLIST, with module STATS."
  (insert (format "  server %S, layout %s\n"
                  (or (plist-get plist :server) "")
                  (plist-get stats :layout)))
  (unless (mailsync--watch-ready watch)
    (insert "  STARTING: setting up the watches\n"))
  (when (plist-get stats :root-missing)
    (insert "  MISSING: removed or moved away; waiting for it to come back\n"))
  (insert (format "  folders %d, inotify watches %d\n"
                  (plist-get stats :folders) (plist-get stats :watches)))
  (when (> (plist-get stats :unwatched) 0)
    (insert (format "  %d directories NOT watched: the inotify watch limit is reached\n"
                    (plist-get stats :unwatched))))
  (insert (format "  events %d (%d ignored), folder reports %d\n"
                  (plist-get stats :events) (plist-get stats :ignored)
                  (plist-get stats :reports)))
  (when (plist-get stats :last-error)
    (insert (format "  watcher error: %s\n" (plist-get stats :last-error)))))

;;;; `mailsync run' as a child of Emacs

(defvar mailsync--run nil
  "The `mailsync run' process, or nil.")

(defvar mailsync--run-timer nil
  "The timer that starts `mailsync run' again, or nil.")

(defvar mailsync--run-backoff 1
  "Seconds before `mailsync run' is started again after it dies.")

(defvar mailsync--run-restarts 0
  "How often `mailsync run' was started again.")

(defvar mailsync--run-last-line nil
  "The last line `mailsync run' printed.")

(defconst mailsync--run-max-backoff 300
  "The longest wait before `mailsync run' is started again, in seconds.")

(defun mailsync--run-arguments ()
  "The arguments of `mailsync run' that the settings ask for, or nil.
From `mailsync-run-accounts', else `mailsync-run-config'."
  (let ((accounts (mapcan (lambda (kind)
                            (let ((names (mapcar #'cadr (cl-remove-if-not (lambda (account)
                                                                           (eq (car account) kind))
                                                                         mailsync-run-accounts))))
                              (when names
                                (cons (format "--%s" kind) names))))
                          '(mbsync offlineimap))))
    (when (or accounts mailsync-run-config)
      (append (list "run")
              (or accounts (list "--config" (expand-file-name mailsync-run-config)))
              (when mailsync-run-then
                (list "--then" mailsync-run-then))
              (list "--print-synced")))))

(defun mailsync--run-start ()
  "Start `mailsync run' as the settings ask, unless it is running."
  (unless (process-live-p mailsync--run)
    (let ((program (executable-find mailsync-program))
          (arguments (mailsync--run-arguments)))
      (unless program
        (user-error "Cannot run %s: not found (set `mailsync-program', or run make install)"
                    mailsync-program))
      (when (and (not mailsync-run-accounts)
                 (not (file-readable-p (expand-file-name mailsync-run-config))))
        (user-error "Cannot run mailsync: cannot read `mailsync-run-config' %s"
                    (expand-file-name mailsync-run-config)))
      (setq mailsync--run
            (make-process :name "mailsync-run"
                          :command (cons program arguments)
                          :connection-type 'pipe
                          :noquery t
                          :coding 'utf-8
                          :filter #'mailsync--run-filter
                          :sentinel #'mailsync--run-sentinel))
      (process-put mailsync--run 'started (float-time))
      (mailsync--log "mailsync run: started: %s" (combine-and-quote-strings arguments)))))

(defun mailsync--run-filter (process output)
  "Log each whole line of OUTPUT from `mailsync run' PROCESS.
Its own time stamp and prefix are left out (the log has both), and so is
the command-line hint after an error."
  (let ((text (concat (or (process-get process 'partial) "") output)))
    (while (string-match "\n" text)
      (let ((line (substring text 0 (match-beginning 0))))
        (setq text (substring text (match-end 0)))
        (setq line (replace-regexp-in-string
                    "\\`\\(?:[0-9-]+ [0-9:.]+ \\)?\\(?:mailsync run: \\)?" "" line))
        (cond
         ((string-match "\\`synced\\(\\(?: [0-9a-f]*\\)+\\)\\'" line)
          (let ((names (mapcar #'mailsync--unhex (split-string (substring (match-string 1 line) 1) " "))))
            (mailsync--log "mailsync run: synced %s" (string-join (or (cdr names) '("everything")) ", "))
            ;; Out of the filter: the hook may take its time.
            (run-at-time 0 nil #'mailsync--after-sync (car names) (cdr names))))
         ((not (string-prefix-p "Try 'mailsync " line))
          (setq mailsync--run-last-line line)
          (mailsync--log "mailsync run: %s" line)))))
    (process-put process 'partial text)))

(defun mailsync--start-beside-run ()
  "Run `mailsync-start' beside `mailsync run'.
A mail store missing before the first sync, which makes it, is no error:
that is said once, and the stores are watched after the next sync."
  (let ((missing (cl-remove-if (lambda (root) (file-directory-p (expand-file-name (car root))))
                               (mailsync--roots))))
    (if missing
        (unless mailsync--start-after-sync
          (setq mailsync--start-after-sync t)
          (mailsync--log "not watching %s until mailsync run has synced: it does not exist yet"
                         (mapconcat #'car missing ", ")))
      (mailsync-start)
      (when mailsync--start-after-sync
        (setq mailsync--start-after-sync nil)
        (mailsync--log "watching the mail stores now that a sync made them")))))

(defun mailsync--unhex (hex)
  "The name that HEX, lower-case hexadecimal of its UTF-8 bytes, stands for."
  (decode-coding-string
   (apply #'unibyte-string
          (mapcar (lambda (at) (string-to-number (substring hex at (+ at 2)) 16))
                  (number-sequence 0 (- (length hex) 2) 2)))
   'utf-8))

(defun mailsync--after-sync (account folders)
  "Run `mailsync-after-sync-functions' with ACCOUNT and FOLDERS.
An error in one is logged; the others still run.  Stores that could not
be watched before (missing before the first sync) are watched now."
  (when (and mailsync--start-after-sync mailsync-mode)
    (condition-case err
        (mailsync--start-beside-run)
      (error (mailsync--error "Cannot watch the mail stores: %s" (error-message-string err)))))
  (run-hook-wrapped 'mailsync-after-sync-functions
                    (lambda (function)
                      (condition-case err
                          (funcall function account folders)
                        (error (mailsync--error "%s after a sync: %s" function
                                                (error-message-string err))))
                      nil)))

(defconst mailsync--run-final-statuses '(2 3 4)
  "Exit statuses of `mailsync run' that starting it again cannot mend.
2: its configuration is wrong; 3: another `mailsync run' runs it; 4: a
server refused the login (a wrong password).")

(defun mailsync--run-sentinel (process event)
  "Start `mailsync run' again when PROCESS ended with EVENT while wanted.
When it ended with one of `mailsync--run-final-statuses', say why once
instead."
  (when (and (eq process mailsync--run) (not (process-live-p process)))
    (let ((ran (- (float-time) (or (process-get process 'started) 0))))
      (cond
       ((and (eq (process-status process) 'exit)
             (memq (process-exit-status process) mailsync--run-final-statuses))
        (setq mailsync--run nil)
        (let ((why (or mailsync--run-last-line (string-trim event))))
          (mailsync--error "The mailsync run process stopped for good: %s" why)
          (display-warning 'mailsync
                           (format "The mailsync run process stopped, and is not started again: %s" why)
                           :error)))
       (t
        ;; A run that lasted a minute was healthy: start over at 1 s.
        (when (> ran 60)
          (setq mailsync--run-backoff 1))
        (mailsync--error "The mailsync run process %s; starting it again in %d s"
                         (string-trim event) mailsync--run-backoff)
        (setq mailsync--run-timer
              (run-with-timer mailsync--run-backoff nil #'mailsync--run-restart))
        (setq mailsync--run-backoff (min (* 2 mailsync--run-backoff) mailsync--run-max-backoff)))))))

(defun mailsync--run-restart ()
  "Start `mailsync run' again, as its sentinel asked."
  (setq mailsync--run-timer nil)
  (when (and mailsync-mode (mailsync--run-arguments))
    (setq mailsync--run-restarts (1+ mailsync--run-restarts))
    (condition-case err
        (mailsync--run-start)
      (error (mailsync--error "Cannot start mailsync run: %s" (error-message-string err))))))

(defun mailsync--run-stop ()
  "Stop `mailsync run': SIGTERM, which waits for a running sync."
  (when mailsync--run-timer
    (cancel-timer mailsync--run-timer)
    (setq mailsync--run-timer nil))
  (let ((process mailsync--run))
    (setq mailsync--run nil
          mailsync--run-backoff 1)
    (when (process-live-p process)
      (signal-process process 'SIGTERM)
      (with-timeout (30 (delete-process process))
        (while (process-live-p process)
          (accept-process-output process 0.05)))
      (mailsync--log "mailsync run: stopped"))))

(defun mailsync--insert-run-status ()
  "Insert the state of `mailsync run' into the status buffer."
  (when (or (mailsync--run-arguments) mailsync--run)
    (insert (format "mailsync %s\n" (combine-and-quote-strings (mailsync--run-arguments))))
    (insert (cond ((process-live-p mailsync--run)
                   (format "  running, pid %d" (process-id mailsync--run)))
                  (mailsync--run-timer "  NOT RUNNING: starting it again soon")
                  (t "  not running")))
    (insert (format ", started again %d times\n" mailsync--run-restarts))
    (when mailsync--run-last-line
      (insert (format "  last line: %s\n" mailsync--run-last-line)))))

;;;; Gnus

;; Every check goes through one queue, run in slices on timers: a wake-up
;; from the module, or the start-up check, only queues groups.  A slice
;; brings each group up to date in the cheapest way that is right:
;;
;; - an nnimap group whose server said, with the change, how its counts
;;   moved (UIDVALIDITY, UIDNEXT, MESSAGES, UNSEEN), when they show new
;;   unseen messages and nothing else: its active range is extended and its
;;   unread count computed from Gnus's own read marks, in Lisp, with no
;;   round trip and nothing sent;
;; - other nnimap groups: Gnus's own bulk activation (what `g' does), one
;;   pipelined EXAMINE per group, sent and left to travel; the answers are
;;   read once they are all in, in a later slice.  Never SELECT, never
;;   EXPUNGE: a check changes nothing on the server;
;; - groups of other back ends (nnmaildir): `gnus-group-get-new-news-this-group',
;;   as many as fit in a slice.

(defvar mailsync--known-status (make-hash-table :test #'equal)
  "The status each nnimap group's count in Gnus was last brought to.
GROUP -> (UIDVALIDITY UIDNEXT MESSAGES UNSEEN): the base that the next
status from the server is compared with.")

(defvar mailsync--queue nil
  "Groups waiting to be checked, oldest first, as (GROUP . WHY).
WHY is nil for a change; `start' for the start-up check, which leaves
alone an nnimap group whose count the server's status shows is right;
`note' for an nnimap group whose status is only to be noted when Gnus's
count stands at it (no check).")

(defvar mailsync--queue-tail nil
  "The last cons of `mailsync--queue', where groups are added.")

(defvar mailsync--queued (make-hash-table :test #'equal)
  "GROUP -> its entry in `mailsync--queue': a group waits there once.")

(defvar mailsync--check-timer nil
  "The timer that runs the next slice of checks, while one is due.")

(defvar mailsync--idle-timer nil
  "The idle timer that runs the next slice once the user stops typing.")

(defvar mailsync--checking nil
  "Non-nil while a slice of checks runs: nothing starts another meanwhile.")

(defvar mailsync--local-cost 0.005
  "Seconds one group of a local back end (nnmaildir) took to check, lately.")

(defvar mailsync--examine-size 10
  "How many nnimap groups one bulk EXAMINE asks about.
As many as Emacs read the answers of within half `mailsync-check-slice', lately.")

(cl-defstruct (mailsync--fetch (:constructor mailsync--fetch-create)
                               (:copier nil))
  "Gnus's bulk EXAMINE of some groups of one nnimap server, under way.
METHOD is the server; GROUPS and INFOS the groups asked about; STATUSES
what the module said of them when asked; SEQUENCES what nnimap returned
for them; BUFFER and PROCESS Gnus's connection; SENT when they were
sent (`nnimap-last-command-time' of the connection, which any later
command changes); TIMER ends the wait when no answer comes; WAITING
the server's groups queued meanwhile, asked about once it is done."
  method groups infos statuses sequences buffer process sent timer waiting)

(defvar mailsync--fetches nil
  "The bulk EXAMINEs under way, at most one per server.")

(defconst mailsync--fetch-timeout 60
  "Seconds a bulk EXAMINE waits for its answers before it is given up.")

(defun mailsync--groups-of (directory folders)
  "The Gnus groups of FOLDERS in the store at DIRECTORY, as the module named them.
A folder the module has not reported is left out, and logged."
  (let ((watch (cl-find directory mailsync--watches
                        :key #'mailsync--watch-name :test #'equal))
        groups)
    (dolist (folder folders)
      (let ((group (and watch (gethash folder (mailsync--watch-groups watch)))))
        (if group
            (push group groups)
          (mailsync--log "%s: no group known for folder %S" directory folder))))
    (nreverse groups)))

(defun mailsync-gnus-check-folders (directory folders)
  "Check the Gnus groups of FOLDERS in the store at DIRECTORY.
The default member of `mailsync-folder-changed-functions'."
  (mailsync--gnus-check (mailsync--groups-of directory folders)))

(defun mailsync--gnus-check (groups)
  "Queue GROUPS to be checked once no other check is under way."
  (mailsync--enqueue groups nil))

(defun mailsync--enqueue (groups why)
  "Queue GROUPS, each once; WHY as in `mailsync--queue'.
A group queued again for a change is checked for it; one queued again
for the start-up check is checked if it was only to be noted."
  (when (and groups (featurep 'gnus) (gnus-alive-p))
    (dolist (group groups)
      (let ((entry (gethash group mailsync--queued)))
        (if entry
            (when (or (null why) (eq (cdr entry) 'note))
              (setcdr entry why))
          (setq entry (cons group why))
          (puthash group entry mailsync--queued)
          (let ((cell (list entry)))
            (if mailsync--queue
                (setcdr mailsync--queue-tail cell)
              (setq mailsync--queue cell))
            (setq mailsync--queue-tail cell)))))
    (mailsync--schedule 0)))

(defun mailsync--dequeue ()
  "Take the oldest entry of `mailsync--queue'."
  (let ((entry (pop mailsync--queue)))
    (unless mailsync--queue
      (setq mailsync--queue-tail nil))
    (remhash (car entry) mailsync--queued)
    entry))

(defun mailsync--schedule (seconds)
  "Run the next slice in SECONDS, unless one is due already."
  (unless (or (timerp mailsync--check-timer) (timerp mailsync--idle-timer))
    (setq mailsync--check-timer (run-with-timer seconds nil #'mailsync--run-slice))))

(defun mailsync--run-when-idle ()
  "Run the slice that waited for the user to stop typing."
  (setq mailsync--idle-timer nil)
  (mailsync--run-slice))

(defun mailsync--forget-checks ()
  "Drop every queued check and every check under way."
  (dolist (fetch mailsync--fetches)
    (mailsync--fetch-end fetch))
  (dolist (timer (list mailsync--check-timer mailsync--idle-timer))
    (when (timerp timer)
      (cancel-timer timer)))
  (setq mailsync--check-timer nil
        mailsync--idle-timer nil
        mailsync--queue nil
        mailsync--queue-tail nil)
  (clrhash mailsync--queued)
  (clrhash mailsync--server-status)
  (clrhash mailsync--known-status))

(defun mailsync--inside-nnimap-wait-p ()
  "Return non-nil inside nnimap's wait for a server's answer.
Timers and process filters run there (in `accept-process-output'): a
command sent on Gnus's connection then would cross the one Gnus waits for."
  (catch 'inside
    (mapbacktrace (lambda (_evald function _args _flags)
                    (when (eq function 'nnimap-wait-for-response)
                      (throw 'inside t))))
    nil))

(defun mailsync--run-slice ()
  "Check queued groups for about `mailsync-check-slice' seconds.
What is left waits for the next slice, on a timer armed when this one
is done; while the user types, for an idle timer."
  (setq mailsync--check-timer nil)
  (cond
   ;; A slice further up the stack (a timer that fired inside it) arms the next.
   (mailsync--checking)
   ((not (and (featurep 'gnus) (gnus-alive-p)))
    (mailsync--forget-checks))
   ((input-pending-p)
    (unless (timerp mailsync--idle-timer)
      (setq mailsync--idle-timer (run-with-idle-timer 0.2 nil #'mailsync--run-when-idle))))
   ((mailsync--inside-nnimap-wait-p)
    (mailsync--schedule 0.05))
   (t
    (let ((mailsync--checking t)
          (start (float-time)))
      (condition-case err
          (mailsync--check-slice (+ start mailsync-check-slice))
        (error (mailsync--error "Checking failed: %s" (error-message-string err))))
      (mailsync--count :check-time (- (float-time) start)))
    (when mailsync--queue
      (mailsync--schedule 0)))))

(defun mailsync--check-slice (deadline)
  "Check queued groups until DEADLINE (a `float-time')."
  (let ((taken 0) local examine updated)
    (while (and mailsync--queue
                (or (zerop taken) (< (float-time) deadline))
                (< (length local) (max 1 (floor mailsync-check-slice mailsync--local-cost))))
      (cl-incf taken)
      (pcase-let* ((`(,group . ,why) (mailsync--dequeue))
                   (method (and (gnus-group-entry group) (gnus-find-method-for-group group))))
        (cond
         ((null method)
          (unless (eq why 'note)
            (mailsync--log "%S is not a Gnus group; not checked" group)))
         ((eq why 'note)
          (when (and (eq (car method) 'nnimap)
                     (eq (mailsync--status-verdict group t) 'current))
            (puthash group (gethash group mailsync--server-status) mailsync--known-status)))
         ((not (eq (car method) 'nnimap))
          (push group local))
         (t
          (pcase (mailsync--status-verdict group why)
            ('current (puthash group (gethash group mailsync--server-status)
                               mailsync--known-status))
            (`(extend . ,status)
             (mailsync--extend-group group status)
             (push group updated))
            (_ (let ((pending (assoc method examine)))
                 (if pending
                     (push group (cdr pending))
                   (push (list method group) examine)))))))))
    (when updated
      (setq updated (nreverse updated))
      (mailsync--keeping-point
       (lambda () (dolist (group updated) (gnus-group-update-group group t))))
      (mailsync--after-check updated t))
    (when local
      (let ((start (float-time))
            (groups (nreverse local)))
        (mailsync--check-groups groups)
        (setq mailsync--local-cost (max 0.0005 (/ (- (float-time) start) (length groups))))))
    (dolist (pending examine)
      (mailsync--examine (car pending) (nreverse (cdr pending))))))

(defun mailsync--after-check (groups new-news)
  "Count GROUPS as checked and call `mailsync-after-check-functions'.
NEW-NEWS non-nil also calls `gnus-after-getting-new-news-hook'."
  (mailsync--count :checks (length groups))
  (when new-news
    (gnus-run-hooks 'gnus-after-getting-new-news-hook))
  (run-hook-with-args 'mailsync-after-check-functions groups))

;;;;; nnimap groups from the server's status

(defun mailsync--info-uidvalidity (group)
  "The UIDVALIDITY nnimap stored for GROUP, as a number, or nil."
  (let ((value (cdr (assq 'uidvalidity (gnus-info-params (gnus-get-info group))))))
    (if (stringp value) (string-to-number value) value)))

(defun mailsync--status-verdict (group at-start)
  "How GROUP's count can be brought up to date from the server's status.
`current' when it is up to date (AT-START only: a change always shows);
\(extend . STATUS) when STATUS shows only new unseen messages since the
status Gnus's count stands at; nil when the server must be asked."
  (pcase-let ((now (gethash group mailsync--server-status))
              (then (gethash group mailsync--known-status))
              (active (gnus-active group)))
    (pcase now
      ((and `(,validity ,next ,messages ,unseen)
            (guard (and (numberp next) active (gnus-get-info group)
                        ;; New mail in an inbox that nnimap splits must be split.
                        (not (mailsync--splits-p (gnus-find-method-for-group group)
                                                 (list group))))))
       (cond
        ((and at-start
              (= (cdr active) (1- next))
              (eql (mailsync--info-uidvalidity group) validity))
         'current)
        ((and (not at-start)
              then
              (eql (nth 0 then) validity)
              (eql (mailsync--info-uidvalidity group) validity)
              (numberp messages) (numberp unseen)
              (numberp (nth 2 then)) (numberp (nth 3 then))
              ;; Gnus's count stands at THEN: nothing came that it missed.
              (= (cdr active) (1- (nth 1 then)))
              ;; As many new messages as new UIDs (none expunged) and
              ;; all of them unseen (none stored as read, as a sent copy is).
              (let ((added (- next (nth 1 then))))
                (and (> added 0)
                     (= added (- messages (nth 2 then)))
                     (= added (- unseen (nth 3 then))))))
         (cons 'extend now)))))))

(defun mailsync--extend-group (group status)
  "Bring GROUP's count to STATUS: its active range to UIDNEXT - 1.
Unread is computed from Gnus's own read marks, as Gnus does.  The
group's stored nnimap parameters (uidvalidity, modseq, active) are left
as they are, so that Gnus's next full check of the group misses nothing."
  (let ((active (gnus-active group)))
    (gnus-set-active group (cons (car active) (1- (nth 1 status))))
    (gnus-get-unread-articles-in-group (gnus-get-info group) (gnus-active group))
    (puthash group status mailsync--known-status)))

;;;;; nnimap groups asked about: Gnus's bulk EXAMINE, without waiting

(defun mailsync--nnimap-buffer (method)
  "The buffer of Gnus's open connection to nnimap server METHOD, or nil.
Never connects: that would hold Emacs for the round trips of a login."
  (require 'nnimap)
  (and (nnimap-open-server (nth 1 method) (nthcdr 2 method) t)
       (nnimap-find-process-buffer nntp-server-buffer)))

(defun mailsync--splits-p (method groups)
  "Non-nil when one of GROUPS is the inbox that nnimap server METHOD splits."
  (let ((inbox (mailsync--nnimap-setting method 'nnimap-inbox nil)))
    (and inbox
         (mailsync--nnimap-setting method 'nnimap-split-methods nil)
         (cl-some (lambda (group)
                    (member (gnus-group-real-name group) (ensure-list inbox)))
                  groups))))

(defun mailsync--examine (method groups)
  "Ask nnimap server METHOD about GROUPS with one bulk EXAMINE; return at once.
The answers are read once they are all in.  Groups of a server already
being asked wait in the queue for the answer."
  (let ((busy (cl-find method mailsync--fetches :key #'mailsync--fetch-method :test #'equal))
        (buffer (mailsync--nnimap-buffer method))
        asked)
    (cond
     (busy (setf (mailsync--fetch-waiting busy)
                 (append (mailsync--fetch-waiting busy) groups)))
     ((not buffer)
      (mailsync--log "Gnus is not connected to %s: %d groups wait for its next `g'"
                     (gnus-method-to-server method) (length groups)))
     (t
      (dolist (group groups)
        (if (mailsync--info-uidvalidity group)
            (push group asked)
          ;; nnimap would SELECT a group it has never seen.
          (mailsync--log "%S: Gnus has not read it yet; its next `g' will" group)))
      (setq asked (nreverse asked))
      (when asked
        (let ((later (nthcdr mailsync--examine-size asked))
              (now (seq-take asked mailsync--examine-size)))
          (when (mailsync--splits-p method now)
            ;; Splitting the inbox is the user's own setting; it is the one
            ;; check that holds Emacs (nnimap splits synchronously).
            (gnus-request-scan nil method))
          (let ((fetch (mailsync--fetch-send method now buffer)))
            (when fetch
              (setf (mailsync--fetch-waiting fetch) later)))))))))

(defun mailsync--requeue (groups)
  "Queue GROUPS again, after what waits already."
  (mailsync--enqueue groups nil))

(defun mailsync--fetch-send (method groups buffer)
  "Send the bulk EXAMINE of GROUPS to METHOD, whose connection is BUFFER.
Return the fetch under way, or nil when nothing could be sent."
  (let* ((infos (mapcar #'gnus-get-info groups))
         (statuses (mapcar (lambda (group) (gethash group mailsync--server-status)) groups)))
    (cl-mapc (lambda (group info status)
               ;; A mailbox made anew: without an active range nnimap checks
               ;; it whole (EXAMINE and the flags of every message), and the
               ;; old range must not outlive it.
               (when (and (car status)
                          (not (eql (car status) (mailsync--info-uidvalidity group))))
                 (gnus-group-remove-parameter info 'active)
                 (gnus-set-active group nil)))
             groups infos statuses)
    (let ((sequences (gnus-retrieve-group-data-early method infos))
          (process (get-buffer-process buffer)))
      (if (not (and sequences process))
          (progn (mailsync--error "Could not ask %s about %d groups"
                                  (gnus-method-to-server method) (length groups))
                 nil)
        (let ((fetch (mailsync--fetch-create
                      :method method :groups groups :infos infos :statuses statuses
                      :sequences sequences :buffer buffer :process process
                      :sent (nnimap-last-command-time (buffer-local-value 'nnimap-object buffer)))))
          (setf (mailsync--fetch-timer fetch)
                (run-with-timer mailsync--fetch-timeout nil #'mailsync--fetch-give-up fetch))
          (add-function :after (process-filter process)
                        (lambda (_process _output) (mailsync--fetch-output fetch))
                        '((name . mailsync-fetch)))
          (push fetch mailsync--fetches)
          ;; The answers may all be in already.
          (mailsync--fetch-output fetch)
          fetch)))))

(defun mailsync--fetch-last-sequence (fetch)
  "The tag of the last command FETCH sent, which nnimap waits for."
  (let ((sequences (mailsync--fetch-sequences fetch)))
    (if (eq (cadar sequences) 'qresync) (caar sequences) (cadar sequences))))

(defun mailsync--fetch-answered-p (fetch)
  "Non-nil when every answer to FETCH is in its connection's buffer.
The test nnimap's own wait makes."
  (with-current-buffer (mailsync--fetch-buffer fetch)
    (save-excursion
      (goto-char (point-max))
      (while (and (not (bobp))
                  (progn (forward-line -1)
                         (looking-at "\\*\\|[0-9]+ OK NOOP"))))
      (looking-at (format "%d .*\n" (mailsync--fetch-last-sequence fetch))))))

(defun mailsync--fetch-output (fetch)
  "Output came on FETCH's connection: once its answers are all in, read them.
Runs in the connection's process filter: the reading waits for a timer."
  (when (and (memq fetch mailsync--fetches)
             (mailsync--fetch-timer fetch)
             (buffer-live-p (mailsync--fetch-buffer fetch))
             (mailsync--fetch-answered-p fetch))
    (mailsync--fetch-stop-waiting fetch)
    (run-with-timer 0 nil #'mailsync--fetch-finish fetch)))

(defun mailsync--fetch-stop-waiting (fetch)
  "FETCH waits for its answers no more: its filter and its timer go.
It stays under way, in `mailsync--fetches', until its answers are read."
  (when (timerp (mailsync--fetch-timer fetch))
    (cancel-timer (mailsync--fetch-timer fetch)))
  (setf (mailsync--fetch-timer fetch) nil)
  (when (process-live-p (mailsync--fetch-process fetch))
    (remove-function (process-filter (mailsync--fetch-process fetch)) 'mailsync-fetch)))

(defun mailsync--fetch-end (fetch)
  "FETCH is over: it waits no more and is no longer under way."
  (mailsync--fetch-stop-waiting fetch)
  (setq mailsync--fetches (delq fetch mailsync--fetches)))

(defun mailsync--fetch-give-up (fetch)
  "No answer to FETCH in time: say so, and let the next change ask again."
  (when (memq fetch mailsync--fetches)
    (mailsync--fetch-end fetch)
    (mailsync--error "%s did not answer in %d s; %d groups not checked"
                     (gnus-method-to-server (mailsync--fetch-method fetch))
                     mailsync--fetch-timeout (length (mailsync--fetch-groups fetch)))
    (mailsync--requeue (mailsync--fetch-waiting fetch))))

(defun mailsync--fetch-crossed-p (fetch)
  "Non-nil when FETCH's answers cannot be trusted to be whole.
Gnus sent a command of its own on the connection meanwhile (and with it
emptied the buffer), or the connection is gone."
  (let ((buffer (mailsync--fetch-buffer fetch)))
    (or (not (buffer-live-p buffer))
        (not (process-live-p (mailsync--fetch-process fetch)))
        (not (equal (nnimap-last-command-time (buffer-local-value 'nnimap-object buffer))
                    (mailsync--fetch-sent fetch))))))

(defun mailsync--fetch-finish (fetch)
  "Read FETCH's answers into Gnus and update the groups' lines."
  (cond
   ;; Forgotten meanwhile (`mailsync-stop').
   ((not (memq fetch mailsync--fetches)))
   ((or mailsync--checking (mailsync--inside-nnimap-wait-p))
    (run-with-timer 0.05 nil #'mailsync--fetch-finish fetch))
   ((progn (mailsync--fetch-end fetch)
           (mailsync--fetch-crossed-p fetch))
    (mailsync--log "%s: Gnus used the connection meanwhile; asking again"
                   (gnus-method-to-server (mailsync--fetch-method fetch)))
    (mailsync--requeue (append (mailsync--fetch-groups fetch) (mailsync--fetch-waiting fetch))))
   (t
    (let* ((mailsync--checking t)
           (start (float-time))
           (groups (mailsync--fetch-groups fetch))
           (validities (mapcar #'mailsync--info-uidvalidity groups))
           remade)
      (with-current-buffer nntp-server-buffer
        (gnus-finish-retrieve-group-infos (mailsync--fetch-method fetch)
                                          (mailsync--fetch-infos fetch)
                                          (mailsync--fetch-sequences fetch)))
      ;; nnimap drops the UIDVALIDITY of a mailbox made anew and updates
      ;; nothing, so that its next check is whole: with a SELECT, were
      ;; the UIDVALIDITY missing.  An impossible one (0) makes it an EXAMINE.
      (cl-mapc (lambda (group validity)
                 (when (and validity (not (mailsync--info-uidvalidity group)))
                   (gnus-group-set-parameter (gnus-get-info group) 'uidvalidity "0")
                   (push group remade)))
               groups validities)
      (when remade
        (mailsync--log "made anew on the server, checked whole: %s"
                       (mapconcat #'prin1-to-string remade " "))
        (setf (mailsync--fetch-waiting fetch)
              (append remade (mailsync--fetch-waiting fetch))))
      (dolist (info (mailsync--fetch-infos fetch))
        (gnus-get-unread-articles-in-group info (gnus-active (gnus-info-group info)) t))
      (cl-mapc (lambda (group status)
                 (if status
                     (puthash group status mailsync--known-status)
                   (remhash group mailsync--known-status)))
               groups (mailsync--fetch-statuses fetch))
      (mailsync--keeping-point
       (lambda () (dolist (group groups) (gnus-group-update-group group t))))
      (let ((took (- (float-time) start)))
        (mailsync--count :check-time took)
        ;; As many groups next time as fill half a slice (the other half is
        ;; room for a garbage collection), growing at most twofold.
        (setq mailsync--examine-size
              (max 5 (min 200 (* 2 (length groups))
                          (floor (* (length groups) mailsync-check-slice 0.5)
                                 (max took 0.001))))))
      (mailsync--after-check groups t))
    (mailsync--requeue (mailsync--fetch-waiting fetch)))))

;;;;; Other back ends, and the command line's checks

(defun mailsync--window-points (buffer)
  "The windows showing BUFFER with their points as (line . column)."
  (mapcar (lambda (window)
            (cons window (with-current-buffer buffer
                           (save-excursion
                             (goto-char (window-point window))
                             (cons (line-number-at-pos) (current-column))))))
          (get-buffer-window-list buffer nil t)))

(defun mailsync--goto-line-column (line-column)
  "Move to LINE-COLUMN, a (line . column) pair; return point."
  (goto-char (point-min))
  (forward-line (1- (car line-column)))
  (move-to-column (cdr line-column))
  (point))

(defun mailsync--keeping-point (function)
  "Call FUNCTION in `*Group*', then put point and its windows' points back.
Gnus redraws a group's line by deleting and inserting it."
  (let ((buffer (get-buffer gnus-group-buffer)))
    (with-current-buffer buffer
      (let ((point (cons (line-number-at-pos) (current-column)))
            (windows (mailsync--window-points buffer)))
        (unwind-protect
            (funcall function)
          (mailsync--goto-line-column point)
          (dolist (window windows)
            (when (window-live-p (car window))
              (set-window-point (car window)
                                (save-excursion
                                  (mailsync--goto-line-column (cdr window)))))))))))

(defun mailsync--check-groups (groups)
  "Check GROUPS in Gnus, leaving point, windows and marked groups alone.
Groups shown in `*Group*' are checked by `gnus-group-get-new-news-this-group'
in one call; others through the same activate and update steps without
inserting lines."
  (mailsync--keeping-point
   (lambda ()
     (let* ((user-marked gnus-group-marked)
            (known (cl-remove-if-not (lambda (group) (gnus-group-entry group)) groups))
            (shown (save-excursion
                     (cl-remove-if-not #'gnus-group-goto-group known)))
            (hidden (cl-set-difference known shown :test #'equal)))
       (dolist (group (cl-set-difference groups known :test #'equal))
         (mailsync--log "%S is not a Gnus group; not checked" group))
       (unwind-protect
           (progn
             (when shown
               (save-excursion
                 (let ((gnus-group-marked (reverse shown))
                       (mark-active nil)
                       (gnus-goto-next-group-when-activating nil))
                   (gnus-group-get-new-news-this-group nil))))
             (dolist (group hidden)
               (mailsync--check-hidden-group group)))
         ;; The check drew the lines of SHOWN without process marks.
         (setq gnus-group-marked user-marked)
         (dolist (group (cl-intersection shown user-marked :test #'equal))
           (gnus-group-update-group group t t))))))
  (mailsync--after-check groups nil))

(defun mailsync--check-hidden-group (group)
  "Check GROUP, which `*Group*' does not show, without showing it."
  (let ((method (gnus-find-method-for-group group)))
    (if (gnus-activate-group group 'scan nil method)
        (let ((info (gnus-get-info group)))
          (when info
            (gnus-request-update-info info method))
          (gnus-get-unread-articles-in-group info (gnus-active group))
          (unless (gnus-virtual-group-p group)
            (gnus-close-group group))
          (gnus-group-update-group group t))
      (mailsync--error "Checking %S failed" group))))

;;;###autoload
(defun mailsync-gnus-check (&optional groups)
  "Check the Gnus GROUPS (full group names); all groups when nil.
For `emacsclient --eval' callers such as `mailsync sync --check-local'.
Groups of other back ends are checked before this returns; nnimap groups
are queued, and asked about as mailsync asks (EXAMINE, never SELECT or
EXPUNGE) without holding Emacs while the server answers.  Return the
number of groups checked or queued, t when all were, 0 when Gnus is not
running."
  (cond
   ((not (and (featurep 'gnus) (gnus-alive-p))) 0)
   ((null groups)
    (save-excursion
      (with-current-buffer gnus-group-buffer
        (gnus-group-get-new-news)))
    t)
   (t (let ((nnimap (cl-remove-if-not
                     (lambda (group)
                       (and (gnus-group-entry group)
                            (eq (car (gnus-find-method-for-group group)) 'nnimap)))
                     groups)))
        (mailsync--gnus-check nnimap)
        (let ((others (cl-set-difference groups nnimap :test #'equal)))
          (when others
            (mailsync--check-groups others))))
      (length groups))))

;; The name rpatterson.mailsync 0.4 used, for existing emacsclient callers.
;;;###autoload
(defalias 'mailsync/gnus-check #'mailsync-gnus-check)

(provide 'mailsync-gnus)
;;; mailsync-gnus.el ends here
