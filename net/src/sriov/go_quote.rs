//! Go-quoted strings, as the kubelet writes annotation values to the
//! downward API.

/// Undoes Go's `strconv.Quote`: a double-quoted string with `\a \b \f \n \r
/// \t \v \\ \" \'`, `\xNN`, octal `\NNN`, `\uNNNN` and `\UNNNNNNNN` escapes.
/// `\x` and octal escapes are bytes, so they are collected as such and the
/// result must be valid UTF-8.
pub(super) fn go_unquote(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
        let digits: String = chars.by_ref().take(n).collect();
        (digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(&digits, 16).ok())
            .flatten()
    };
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => match chars.next()? {
                'a' => out.push(0x07),
                'b' => out.push(0x08),
                'f' => out.push(0x0c),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                'v' => out.push(0x0b),
                '\\' => out.push(b'\\'),
                '"' => out.push(b'"'),
                '\'' => out.push(b'\''),
                'x' => out.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
                'u' => push(&mut out, char::from_u32(hex(&mut chars, 4)?)?),
                'U' => push(&mut out, char::from_u32(hex(&mut chars, 8)?)?),
                d @ '0'..='7' => {
                    let mut v = d.to_digit(8)?;
                    for _ in 0..2 {
                        v = v * 8 + chars.next()?.to_digit(8)?;
                    }
                    out.push(u8::try_from(v).ok()?);
                }
                _ => return None,
            },
            c => push(&mut out, c),
        }
    }
    // Nothing may follow the closing quote.
    if chars.next().is_some() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
/// Quotes like Go's `%q` for the characters the tests use.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoted_values_unquote() {
        assert_eq!(go_unquote(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(
            go_unquote(r#""a\"b\\c\nd\te\x41\101\u00e9\U0001F600\a\v\f\r\b\'""#).as_deref(),
            Some("a\"b\\c\nd\teAA\u{e9}\u{1F600}\x07\x0b\x0c\r\x08'")
        );
        assert_eq!(go_unquote(r#""\xc3\xa9""#).as_deref(), Some("é"));
        assert_eq!(go_unquote(r#""héllo""#).as_deref(), Some("héllo"));
        for bad in [
            "",
            "plain",
            "\"open",
            "\"x\"y",
            r#""\q""#,
            r#""\x4""#,
            r#""\xff""#,
            r#""\400""#,
            r#""\uD800""#,
        ] {
            assert_eq!(go_unquote(bad), None, "{bad}");
        }
    }
}
