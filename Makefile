# mailsync — see README.md.
#   make            build the binary and the Emacs module (release)
#   make test       install what is missing, then run every test
#   make demo       Gnus in the terminal over a demo maildir, mail arriving live
#   make bench      benchmarks, printed side by side
#   make install PREFIX=~/.local

PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
LISPDIR = $(PREFIX)/share/emacs/site-lisp/mailsync
# systemd user units: the system-wide place, or ~/.config/systemd/user
# for PREFIX=~/.local (systemd does not look in ~/.local/lib).
SYSTEMD_USER_DIR ?= $(if $(filter $(HOME)/%,$(abspath $(PREFIX))),$(HOME)/.config/systemd/user,$(PREFIX)/lib/systemd/user)
EMACS ?= emacs
CARGO ?= cargo
MODULE = mailsync-gnus-module.so
# Where cargo builds: its own CARGO_TARGET_DIR when set.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
SEED_NAMES = mailsync_offlineimap mailsync_offlineimap_local mailsync_gnus_watch
# Names for .mswatchrc without mswatch's keywords in them.
LINK_NAMES = $(SEED_NAMES) mailsync-sync mailsync-watch

.PHONY: all build module test deps-test demo bench install clean

all: build

build:
	@scripts/setup.sh build
	$(CARGO) build --release
	cp $(TARGET_DIR)/release/libmailsync.so $(MODULE)

module: build

deps-test:
	@scripts/setup.sh test

test: deps-test
	tests/run-all.sh

demo: build
	@scripts/setup.sh demo
	scripts/demo.sh

bench: build
	@scripts/setup.sh bench
	tests/bench.sh

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LISPDIR)
	install -m 755 $(TARGET_DIR)/release/mailsync $(DESTDIR)$(BINDIR)/mailsync
	for name in $(LINK_NAMES); do ln -sf mailsync $(DESTDIR)$(BINDIR)/$$name; done
	install -m 644 mailsync-gnus.el mailsync-pkg.el $(DESTDIR)$(LISPDIR)/
	install -m 755 $(MODULE) $(DESTDIR)$(LISPDIR)/
	install -d $(DESTDIR)$(SYSTEMD_USER_DIR)
	for unit in mailsync.service mailsync@.service; do \
	  sed 's|@BINDIR@|$(abspath $(BINDIR))|g' scripts/$$unit.in > $(DESTDIR)$(SYSTEMD_USER_DIR)/$$unit; done
	@echo
	@echo "mailsync is installed:"
	@echo "  $(abspath $(BINDIR))/mailsync, and its other names: $(LINK_NAMES)"
	@echo "  $(abspath $(LISPDIR))/: mailsync-gnus.el and its module"
	@echo "  $(SYSTEMD_USER_DIR)/: mailsync.service (~/.mswatchrc), mailsync@.service (an mbsync channel)"
	@echo "Next:"
	@echo "  push sync of mbsync channel CHANNEL:  systemctl --user enable --now mailsync@CHANNEL"
	@echo "    (or by hand: mailsync run --mbsync CHANNEL; OfflineIMAP: mailsync run --offlineimap ACCOUNT)"
	@echo "  in ~/.emacs or ~/.gnus.el:  (add-to-list 'load-path \"$(abspath $(LISPDIR))\")"
	@echo "                              (require 'mailsync-gnus) (mailsync-mode 1)"
	@case ":$$PATH:" in *":$(abspath $(BINDIR)):"*) ;; *) echo "  $(abspath $(BINDIR)) is not in your PATH: add it (the units need no PATH)";; esac

clean:
	$(CARGO) clean
	rm -f $(MODULE) *.elc lisp/*.elc
