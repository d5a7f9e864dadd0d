//! RabbitMQ's permission patterns: regular expressions matched anywhere in a name (PCRE's
//! `re:run` without anchors), where the empty pattern means `^$` (matches only the empty
//! name), compiled once when a permission is set. Topic-permission patterns first have
//! `{username}`, `{vhost}` (and `{client_id}` where the protocol has one) replaced, as
//! `rabbit_auth_backend_internal:expand_topic_permission` does: plain text substitution, no
//! escaping.
//!
//! RabbitMQ runs PCRE; we run the `regex` crate. The two agree on the patterns people write
//! (anchors, alternation, classes, `.*`); PCRE-only constructs (look-around, back-references)
//! are refused when the permission is set. A `{` that does not start a repetition (`{2}`,
//! `{2,}`, `{2,5}`) is a literal in PCRE, so it is escaped before compiling: an unexpanded
//! `{client_id}` then matches its own text, as in RabbitMQ.

use regex::Regex;

/// A compiled permission pattern.
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    /// `.*` (and the like): every name. Checked without running a regex.
    Any,
    /// The empty pattern: only the empty name.
    Empty,
    /// Anything else, matched anywhere in the name.
    Regex(Regex),
}

impl Matcher {
    /// Compiles `pattern`; the error is the regex parser's message.
    pub(crate) fn compile(pattern: &str) -> Result<Matcher, String> {
        match pattern {
            "" | "^$" => Ok(Matcher::Empty),
            ".*" | "^.*" | "^.*$" | ".*$" => Ok(Matcher::Any),
            p => Regex::new(&escape_literal_braces(p))
                .map(Matcher::Regex)
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether `name` is allowed.
    pub(crate) fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Empty => name.is_empty(),
            Matcher::Regex(r) => r.is_match(name),
        }
    }
}

/// `pattern` with `{name}` replaced by `value` for each variable, as RabbitMQ expands topic
/// permissions (the value is not escaped: RabbitMQ does not escape it either).
pub(crate) fn expand(pattern: &str, vars: &[(&str, &str)]) -> String {
    let mut out = pattern.to_string();
    for (name, value) in vars {
        let placeholder = format!("{{{name}}}");
        if out.contains(&placeholder) {
            out = out.replace(&placeholder, value);
        }
    }
    out
}

/// Escapes each `{` that PCRE would read as a literal (one not starting `{n}`, `{n,}` or
/// `{n,m}`), so that the `regex` crate reads it as PCRE does.
fn escape_literal_braces(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 4);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            // An escape: copy it and the escaped character untouched.
            let next = p[i + 1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&p[i..i + 1 + next]);
            i += 1 + next;
            continue;
        }
        if c == b'{' && !is_quantifier(&b[i..]) {
            out.push_str("\\{");
            i += 1;
            continue;
        }
        if c == b'}' && !closes_quantifier(&b[..=i]) {
            out.push_str("\\}");
            i += 1;
            continue;
        }
        let len = p[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&p[i..i + len]);
        i += len;
    }
    out
}

/// Whether `s` (starting at a `{`) is a repetition `{n}`, `{n,}` or `{n,m}`.
fn is_quantifier(s: &[u8]) -> bool {
    let body = &s[1..];
    let Some(end) = body.iter().position(|&c| c == b'}') else {
        return false;
    };
    let inner = &body[..end];
    let (lo, hi) = match inner.iter().position(|&c| c == b',') {
        Some(comma) => (&inner[..comma], Some(&inner[comma + 1..])),
        None => (inner, None),
    };
    !lo.is_empty()
        && lo.iter().all(u8::is_ascii_digit)
        && hi.is_none_or(|h| h.iter().all(u8::is_ascii_digit))
}

/// Whether the `}` that ends `upto` closes a repetition.
fn closes_quantifier(upto: &[u8]) -> bool {
    upto.iter().rposition(|&c| c == b'{').is_some_and(|open| {
        is_quantifier(&upto[open..]) && upto[open..].iter().filter(|&&c| c == b'}').count() == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Matcher::compile(p).expect("compiles").is_match(name)
    }

    #[test]
    fn patterns_match_as_rabbitmq_does() {
        assert!(m(".*", "anything"));
        assert!(m(".*", ""));
        assert!(m("", ""));
        assert!(!m("", "q"));
        // Unanchored: a pattern matches anywhere unless it anchors itself.
        assert!(m("conf", "my-conf-q"));
        assert!(!m("^conf", "my-conf-q"));
        assert!(m("^u-write.*|^amq\\.default$", "amq.default"));
        assert!(!m("^u-write.*|^amq\\.default$", "amq.defaultx"));
        assert!(m("^a{2}$", "aa"));
        assert!(m("^a{1,}$", "aaa"));
        assert!(Matcher::compile("(?<=a)b").is_err());
    }

    #[test]
    fn braces_that_are_not_repetitions_are_literals() {
        assert!(m("^{client_id}\\.", "{client_id}.x"));
        assert!(!m("^{client_id}\\.", "c1.x"));
        assert!(m("x{", "ax{"));
        assert!(m("}", "a}"));
        assert!(m("^\\{a\\}$", "{a}"));
    }

    #[test]
    fn variables_expand_as_text() {
        let vars = [("username", "u.1"), ("vhost", "/")];
        assert_eq!(expand("^{username}\\..*", &vars), "^u.1\\..*");
        assert_eq!(expand("{vhost}-{vhost}", &vars), "/-/");
        assert_eq!(expand("{client_id}", &vars), "{client_id}");
    }
}
