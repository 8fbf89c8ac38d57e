//! Quoting for the two languages a folder name is handed to: Emacs Lisp
//! string literals (for `emacsclient --eval`) and POSIX shell words (for
//! `ssh HOST COMMAND` and `--dry-run`). No folder name can break out of
//! either.

/// A Lisp string literal whose contents are `bytes`, exactly.
///
/// `"` and `\` are escaped, as are control characters; bytes that are not
/// UTF-8 become octal escapes, which the Lisp reader turns into the same
/// raw bytes that `directory-files` gives for such a file name.
pub fn lisp_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                ch if (ch as u32) < 0x20 || ch == '\u{7f}' => out.push_str(&format!("\\{:o}", ch as u32)),
                ch => out.push(ch),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\{byte:o}"));
        }
    }
    out.push('"');
    out
}

/// The Lisp expression that calls `function` on `groups` (all groups when
/// `None`): `(FUNCTION (quote ("g1" "g2")))` or `(FUNCTION nil)`.
pub fn lisp_call(function: &str, groups: Option<&[Vec<u8>]>) -> String {
    match groups {
        None => format!("({function} nil)"),
        Some(groups) => {
            let literals: Vec<String> = groups.iter().map(|group| lisp_string(group)).collect();
            format!("({function} (quote ({})))", literals.join(" "))
        }
    }
}

/// Whether `name` can be spliced into Lisp as a function symbol.
pub fn is_lisp_symbol(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/:+*<>=!?$%&~^.".contains(c))
}

/// One word for a shell, as bytes: unchanged when it is plainly safe, else
/// in single quotes, with each `'` written as `'\''` and each `\` as
/// `'\\'` (outside the quotes). sh, dash, bash and zsh take every byte
/// inside single quotes literally; fish does too except `\\` and `\'`, which
/// therefore never appear inside them. So the word means the same to every
/// login shell ssh may hand it to.
pub fn shell_word(bytes: &[u8]) -> Vec<u8> {
    let safe = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@%".contains(b));
    if safe {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &byte in bytes {
        match byte {
            b'\'' => out.extend_from_slice(b"'\\''"),
            b'\\' => out.extend_from_slice(b"'\\\\'"),
            byte => out.push(byte),
        }
    }
    out.push(b'\'');
    out
}

/// A whole command line for a shell, as bytes.
pub fn shell_line<S: AsRef<[u8]>>(words: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        out.extend(shell_word(word.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lisp_strings_escape_quotes_backslashes_and_odd_bytes() {
        assert_eq!(lisp_string(b"plain"), r#""plain""#);
        assert_eq!(lisp_string(br#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            lisp_string(br#"(shell-command "touch PWNED")"#),
            r#""(shell-command \"touch PWNED\")""#
        );
        assert_eq!(lisp_string(b"caf\xe9"), r#""caf\351""#);
        assert_eq!(lisp_string("café".as_bytes()), "\"café\"");
        assert_eq!(lisp_string(b"line\nbreak\ttab"), r#""line\nbreak\11tab""#);
    }

    #[test]
    fn lisp_calls_quote_the_group_list() {
        let groups = vec![b"nnimap+local:INBOX".to_vec(), br#"x")(kill-emacs)("#.to_vec()];
        assert_eq!(
            lisp_call("mailsync/gnus-check", Some(&groups)),
            r#"(mailsync/gnus-check (quote ("nnimap+local:INBOX" "x\")(kill-emacs)(")))"#
        );
        assert_eq!(
            lisp_call("mailsync/gnus-check", None),
            "(mailsync/gnus-check nil)"
        );
    }

    #[test]
    fn only_plain_symbols_are_functions() {
        assert!(is_lisp_symbol("mailsync/gnus-check"));
        assert!(is_lisp_symbol("my-check"));
        assert!(!is_lisp_symbol("(kill-emacs)"));
        assert!(!is_lisp_symbol("a b"));
        assert!(!is_lisp_symbol(""));
    }

    #[test]
    fn shell_words_cannot_break_out() {
        assert_eq!(shell_word(b"offlineimap"), b"offlineimap");
        assert_eq!(shell_word(b"INBOX,foo.bar"), b"INBOX,foo.bar");
        assert_eq!(shell_word(b"it's here"), br"'it'\''s here'");
        assert_eq!(shell_word(br"a\b"), br"'a'\\'b'");
        assert_eq!(shell_word(b"$(touch PWNED)"), b"'$(touch PWNED)'");
        assert_eq!(shell_word(b""), b"''");
        assert_eq!(shell_word(b"caf\xe9 x"), b"'caf\xe9 x'");
        assert_eq!(shell_line(&["mbsync", "test:a b"]), b"mbsync 'test:a b'");
    }
}
