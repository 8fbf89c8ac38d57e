//! An mswatch configuration (`~/.mswatchrc`), read with mswatch 1.2's
//! grammar and meaning, so a file mswatch takes is taken here unchanged.
//!
//! `#` starts a comment to the end of the line; spaces and tabs separate
//! words; `"…"` quotes a word (the quotes are dropped); each statement ends
//! with its line. Beyond mswatch: times may be fractional (`base_delay
//! 0.05`), and `sync` or `watch` may be words of a command (mswatch takes
//! them as keywords wherever they stand, so `sync mailsync sync` must be
//! written `sync mailsync "sync"` there).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// A mail store and the command that watches it.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    pub name: String,
    pub watch: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// From a mailbox's first queued change to its sync.
    pub base_delay: Duration,
    /// Between two syncs (or failed attempts) of one mailbox.
    pub inter_delay: Duration,
    /// `inter_delay` for the mailboxes named with it.
    pub inter_delays: HashMap<String, Duration>,
    /// The longest wait between failed attempts.
    pub max_delay: Duration,
    /// Everything is synced this often; None: never.
    pub poll_period: Option<Duration>,
    /// Changes to these are not synced (they are at start).
    pub ignore: Vec<String>,
    /// The sync program and its arguments.
    pub sync: Vec<String>,
    /// Put before every mailbox argument; the separator only before a
    /// mailbox's name.
    pub mailbox_prefix: Option<(String, String)>,
    pub stores: [Store; 2],
}

/// What is wrong with a configuration, and on which line.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    EndOfLine,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("{word:?}"),
            Token::Open => "\"{\"".into(),
            Token::Close => "\"}\"".into(),
            Token::EndOfLine => "the end of the line".into(),
        }
    }
}

fn tokens(text: &str) -> Result<Vec<(Token, usize)>, ConfigError> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                ' ' | '\t' | '\r' => {
                    chars.next();
                }
                '#' => break,
                '{' => {
                    chars.next();
                    found.push((Token::Open, number));
                }
                '}' => {
                    chars.next();
                    found.push((Token::Close, number));
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(c) => word.push(c),
                            None => {
                                return Err(ConfigError {
                                    line: number,
                                    message: "a quote is not closed on its line".into(),
                                })
                            }
                        }
                    }
                    found.push((Token::Word(word), number));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if matches!(c, ' ' | '\t' | '\r' | '#' | '{' | '}' | '"') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    found.push((Token::Word(word), number));
                }
            }
        }
        found.push((Token::EndOfLine, number));
    }
    Ok(found)
}

/// The words mswatch takes as keywords wherever they stand.
const KEYWORDS: [&str; 9] = [
    "base_delay",
    "inter_delay",
    "max_delay",
    "poll_period",
    "ignore",
    "sync",
    "mailbox_prefix",
    "store",
    "watch",
];

/// `word` as an mswatchrc word: quoted when it is empty, a keyword, or
/// holds what ends a bare word.
fn quoted(word: &str) -> Result<String, String> {
    if word.contains(['"', '\n', '\r']) {
        return Err(format!(
            "{word:?} cannot be written in an mswatchrc (it holds a quote or a line break)"
        ));
    }
    let bare = !word.is_empty() && !KEYWORDS.contains(&word) && !word.contains([' ', '\t', '#', '{', '}']);
    Ok(if bare {
        word.to_string()
    } else {
        format!("\"{word}\"")
    })
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(token, _)| token)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .map_or(0, |(_, line)| *line)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).map(|(token, _)| token.clone());
        self.at += 1;
        token
    }

    fn fail<T>(&self, message: String) -> Result<T, ConfigError> {
        Err(ConfigError {
            line: self.line(),
            message,
        })
    }

    fn expected<T>(&self, what: &str) -> Result<T, ConfigError> {
        let found = self.peek().map_or("the end of the file".into(), Token::describe);
        self.fail(format!("expected {what}, found {found}"))
    }

    /// The words up to the end of the line (or a `}`).
    fn words(&mut self) -> Vec<String> {
        let mut words = Vec::new();
        while let Some(Token::Word(word)) = self.peek() {
            words.push(word.clone());
            self.at += 1;
        }
        words
    }

    fn end_of_line(&mut self) -> Result<(), ConfigError> {
        match self.peek() {
            Some(Token::EndOfLine) => {
                self.at += 1;
                Ok(())
            }
            None => Ok(()),
            Some(_) => self.expected("the end of the line"),
        }
    }

    fn skip_blank_lines(&mut self) {
        while self.peek() == Some(&Token::EndOfLine) {
            self.at += 1;
        }
    }

    fn time(&mut self, after: &str) -> Result<Duration, ConfigError> {
        match self.peek() {
            Some(Token::Word(word)) => match word.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() && (0.0..=1e9).contains(&seconds) => {
                    self.at += 1;
                    Ok(Duration::from_secs_f64(seconds))
                }
                _ => self.expected(&format!("a time in seconds after {after}")),
            },
            _ => self.expected(&format!("a time in seconds after {after}")),
        }
    }

    fn store(&mut self) -> Result<Store, ConfigError> {
        let name = match self.next() {
            Some(Token::Word(name)) => name,
            _ => {
                self.at -= 1;
                return self.expected("a store name after store");
            }
        };
        self.skip_blank_lines();
        if self.next() != Some(Token::Open) {
            self.at -= 1;
            return self.expected(&format!("\"{{\" to open store {name}"));
        }
        self.skip_blank_lines();
        if self.peek() != Some(&Token::Word("watch".into())) {
            return self.expected(&format!("watch in store {name}"));
        }
        self.at += 1;
        let watch = self.words();
        if watch.is_empty() {
            return self.expected(&format!("the watch command of store {name}"));
        }
        self.skip_blank_lines();
        if self.next() != Some(Token::Close) {
            self.at -= 1;
            return self.expected(&format!("\"}}\" to close store {name}"));
        }
        self.end_of_line()?;
        Ok(Store { name, watch })
    }
}

/// A configuration being read: mswatch's defaults until a line sets them.
struct Draft {
    base_delay: Duration,
    inter_delay: Duration,
    inter_delays: HashMap<String, Duration>,
    max_delay: Duration,
    poll_period: Option<Duration>,
    ignore: Vec<String>,
    sync: Option<Vec<String>>,
    mailbox_prefix: Option<(String, String)>,
    stores: Vec<Store>,
}

impl Default for Draft {
    /// mswatch 1.2.0's own defaults.
    fn default() -> Self {
        Draft {
            base_delay: Duration::from_secs(10),
            inter_delay: Duration::from_secs(60),
            inter_delays: HashMap::new(),
            max_delay: Duration::from_secs(600),
            poll_period: Some(Duration::from_secs(86400)),
            ignore: Vec::new(),
            sync: None,
            mailbox_prefix: None,
            stores: Vec::new(),
        }
    }
}

impl Draft {
    /// Reads the rest of setting `keyword`, which starts line `line`.
    /// Returns whether the line's end is still to be read (a store's
    /// block reads its own).
    fn setting(&mut self, parser: &mut Parser, keyword: &str, line: usize) -> Result<bool, ConfigError> {
        let error = |message: String| Err(ConfigError { line, message });
        match keyword {
            "base_delay" => self.base_delay = parser.time("base_delay")?,
            "max_delay" => self.max_delay = parser.time("max_delay")?,
            "poll_period" => {
                let period = parser.time("poll_period")?;
                self.poll_period = (!period.is_zero()).then_some(period);
            }
            "inter_delay" => {
                let delay = parser.time("inter_delay")?;
                let mailboxes = parser.words();
                if mailboxes.is_empty() {
                    self.inter_delay = delay;
                }
                for mailbox in mailboxes {
                    self.inter_delays.insert(mailbox, delay);
                }
            }
            "ignore" => {
                let mailboxes = parser.words();
                if mailboxes.is_empty() {
                    return parser.expected("mailbox names after ignore");
                }
                self.ignore.extend(mailboxes);
            }
            "sync" => {
                let command = parser.words();
                if command.is_empty() {
                    return parser.expected("the sync program after sync");
                }
                self.sync = Some(command);
            }
            "mailbox_prefix" => match <[String; 2]>::try_from(parser.words()) {
                Ok([prefix, separator]) => self.mailbox_prefix = Some((prefix, separator)),
                Err(_) => return error("mailbox_prefix takes a prefix and a separator".into()),
            },
            "store" if self.stores.len() == 2 => return error("a third store: mswatch syncs two".into()),
            "store" => {
                self.stores.push(parser.store()?);
                return Ok(false);
            }
            other => {
                return error(format!(
                    "unknown setting {other:?} (base_delay, inter_delay, max_delay, poll_period, \
                     ignore, sync, mailbox_prefix or store)"
                ))
            }
        }
        Ok(true)
    }

    /// The configuration, once every line is read.
    fn finish(self) -> Result<Config, ConfigError> {
        let sync = self.sync.ok_or_else(|| ConfigError {
            line: 0,
            message: "no sync program (a line `sync PROGRAM ARGS…`)".into(),
        })?;
        let stores: [Store; 2] = self.stores.try_into().map_err(|found: Vec<Store>| ConfigError {
            line: 0,
            message: format!(
                "two stores are needed (`store NAME {{ watch … }}`), found {}",
                found.len()
            ),
        })?;
        Ok(Config {
            base_delay: self.base_delay,
            inter_delay: self.inter_delay,
            inter_delays: self.inter_delays,
            max_delay: self.max_delay,
            poll_period: self.poll_period,
            ignore: self.ignore,
            sync,
            mailbox_prefix: self.mailbox_prefix,
            stores,
        })
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut parser = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        let mut draft = Draft::default();
        loop {
            parser.skip_blank_lines();
            let line = parser.line();
            let keyword = match parser.next() {
                None => return draft.finish(),
                Some(Token::Word(word)) => word,
                Some(_) => {
                    parser.at -= 1;
                    return parser.expected("a setting");
                }
            };
            if draft.setting(&mut parser, &keyword, line)? {
                parser.end_of_line()?;
            }
        }
    }

    /// The sync program's arguments for everything (None) or the mailboxes.
    pub fn sync_arguments(&self, mailboxes: Option<&[String]>) -> Vec<String> {
        match (mailboxes, &self.mailbox_prefix) {
            (None, None) => Vec::new(),
            (None, Some((prefix, _))) => vec![prefix.clone()],
            (Some(mailboxes), None) => mailboxes.to_vec(),
            (Some(mailboxes), Some((prefix, separator))) => mailboxes
                .iter()
                .map(|mailbox| format!("{prefix}{separator}{mailbox}"))
                .collect(),
        }
    }

    /// The configuration as an mswatchrc that [`Config::parse`] reads
    /// back unchanged; an error names a word no mswatchrc can hold (one
    /// with a `"` or a line break).
    pub fn render(&self) -> Result<String, String> {
        let seconds = |delay: &Duration| format!("{}", delay.as_secs_f64());
        let words = |words: &[String]| -> Result<String, String> {
            words
                .iter()
                .map(|word| quoted(word))
                .collect::<Result<Vec<_>, _>>()
                .map(|words| words.join(" "))
        };
        let mut text = format!(
            "base_delay {}\ninter_delay {}\nmax_delay {}\npoll_period {}\n",
            seconds(&self.base_delay),
            seconds(&self.inter_delay),
            seconds(&self.max_delay),
            self.poll_period.as_ref().map_or("0".into(), seconds)
        );
        let mut special: Vec<(&String, &Duration)> = self.inter_delays.iter().collect();
        special.sort();
        for (mailbox, delay) in special {
            text += &format!("inter_delay {} {}\n", seconds(delay), quoted(mailbox)?);
        }
        if !self.ignore.is_empty() {
            text += &format!("ignore {}\n", words(&self.ignore)?);
        }
        text += &format!("sync {}\n", words(&self.sync)?);
        if let Some((prefix, separator)) = &self.mailbox_prefix {
            text += &format!("mailbox_prefix {} {}\n", quoted(prefix)?, quoted(separator)?);
        }
        for store in &self.stores {
            text += &format!(
                "store {}\n{{\n  watch {}\n}}\n",
                quoted(&store.name)?,
                words(&store.watch)?
            );
        }
        Ok(text)
    }

    /// The `inter_delay` of `mailbox`.
    pub fn inter_delay_of(&self, mailbox: &str) -> Duration {
        self.inter_delays
            .get(mailbox)
            .copied()
            .unwrap_or(self.inter_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# mswatch's own sample, as Debian ships it
#base_delay 10
base_delay 2
inter_delay 30 important_mailbox
inter_delay 600 high_volume_mailbox another_mailbox
inter_delay 0.5
max_delay 300
poll_period 0
ignore Trash \"Sent Items\"
sync socketwatch mbsync
mailbox_prefix mydomain :

store local
{
\t# a comment inside
\twatch watch_maildirs
}

store mydomain {
\twatch ssh -o BatchMode=yes mail.mydomain.com inputkill watch_maildirs
}
";

    #[test]
    fn mswatchs_sample_reads_with_every_setting() {
        let config = Config::parse(SAMPLE).unwrap();
        assert_eq!(config.base_delay, Duration::from_secs(2));
        assert_eq!(config.inter_delay, Duration::from_millis(500));
        assert_eq!(
            config.inter_delay_of("important_mailbox"),
            Duration::from_secs(30)
        );
        assert_eq!(config.inter_delay_of("another_mailbox"), Duration::from_secs(600));
        assert_eq!(config.inter_delay_of("INBOX"), Duration::from_millis(500));
        assert_eq!(config.max_delay, Duration::from_secs(300));
        assert_eq!(config.poll_period, None);
        assert_eq!(config.ignore, ["Trash", "Sent Items"]);
        assert_eq!(config.sync, ["socketwatch", "mbsync"]);
        assert_eq!(config.stores[0].name, "local");
        assert_eq!(config.stores[0].watch, ["watch_maildirs"]);
        assert_eq!(config.stores[1].watch[..3], ["ssh", "-o", "BatchMode=yes"]);
        assert_eq!(config.sync_arguments(None), ["mydomain"]);
        assert_eq!(
            config.sync_arguments(Some(&["INBOX".into(), "a.b".into()])),
            ["mydomain:INBOX", "mydomain:a.b"]
        );
    }

    #[test]
    fn defaults_are_mswatchs() {
        let config =
            Config::parse("sync mailsync \"sync\"\nstore a { watch x\n}\nstore b\n{\nwatch y\n}\n").unwrap();
        assert_eq!(config.base_delay, Duration::from_secs(10));
        assert_eq!(config.inter_delay, Duration::from_secs(60));
        assert_eq!(config.max_delay, Duration::from_secs(600));
        assert_eq!(config.poll_period, Some(Duration::from_secs(86400)));
        assert_eq!(config.sync, ["mailsync", "sync"]);
        assert_eq!(config.sync_arguments(None), Vec::<String>::new());
        assert_eq!(config.sync_arguments(Some(&["INBOX".into()])), ["INBOX"]);
        // Beyond mswatch: `sync` may be a word of the command.
        let config =
            Config::parse("sync mailsync sync\nstore a { watch x\n}\nstore b { watch y\n}\n").unwrap();
        assert_eq!(config.sync, ["mailsync", "sync"]);
    }

    #[test]
    fn a_rendered_configuration_reads_back_unchanged() {
        let mut config = Config::parse(SAMPLE).unwrap();
        config.stores[0].watch = vec![
            "mailsync".into(),
            "watch".into(),
            "--maildir".into(),
            "/a b/#c{d}".into(),
        ];
        config.ignore.push(String::new());
        let text = config.render().unwrap();
        assert_eq!(Config::parse(&text).unwrap(), config, "{text}");
        assert!(text.contains("\"watch\" --maildir \"/a b/#c{d}\""), "{text}");
        config.sync.push("a\"b".into());
        assert!(config.render().unwrap_err().contains("a quote or a line break"));
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let stores = "store a {\nwatch x\n}\nstore b {\nwatch y\n}\n";
        let cases: &[(&str, usize, &str)] = &[
            (
                "base_delay soon\n",
                1,
                "expected a time in seconds after base_delay, found \"soon\"",
            ),
            (
                "\n\nbase_delay -1\n",
                3,
                "expected a time in seconds after base_delay",
            ),
            (
                "sync x\nbase_delay 1 2\n",
                2,
                "expected the end of the line, found \"2\"",
            ),
            (
                "sync x\nmailbox_prefix a\n",
                2,
                "mailbox_prefix takes a prefix and a separator",
            ),
            ("sync x\nignore\n", 2, "expected mailbox names after ignore"),
            ("sync x\nbase_dealy 1\n", 2, "unknown setting \"base_dealy\""),
            (
                "sync x\nstore a {\n}\n",
                3,
                "expected watch in store a, found \"}\"",
            ),
            (
                "sync x\nstore a {\nwatch x\n",
                3,
                "expected \"}\" to close store a, found the end of the file",
            ),
            (
                "sync x\nstore a watch x\n",
                2,
                "expected \"{\" to open store a, found \"watch\"",
            ),
            ("sync \"x\n", 1, "a quote is not closed on its line"),
            ("sync\n", 1, "expected the sync program after sync"),
            (stores, 0, "no sync program"),
            ("sync x\nstore a {\nwatch x\n}\n", 0, "two stores are needed"),
        ];
        for (text, line, message) in cases {
            let text = if text.starts_with("sync x") && !text.contains("store") {
                format!("{text}{stores}")
            } else {
                text.to_string()
            };
            let error = Config::parse(&text).unwrap_err();
            assert_eq!(error.line, *line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
        let third = format!("sync x\n{stores}store c {{\nwatch z\n}}\n");
        assert_eq!(Config::parse(&third).unwrap_err().line, 8);
    }
}
