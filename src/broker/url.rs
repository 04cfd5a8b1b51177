//! A broker URL's userinfo, parsed once: the credentials it carries, the URL without
//! them (what fleetsim dials) and the URL with them masked (what it logs and writes).
//! The userinfo is looked for in the authority only, so an `@` in a path is not taken
//! for one.

/// Removes `user:pass@` or `token@` from a URL so it can be logged and written to results.
/// Only the authority's userinfo is: an `@` in the path (`tls://h/x@y`) stays.
pub fn redact_url(url: &str) -> String {
    match userinfo_span(url) {
        Some((start, at)) => format!("{}***@{}", &url[..start], &url[at + 1..]),
        None => url.to_string(),
    }
}

/// The credentials of a `nats://user:password@host` or `nats://token@host` URL, the
/// forms the NATS tools accept. async-nats 0.51 parses such a URL but never sends its
/// userinfo, so every connection fleetsim makes applies them as connect options; the
/// agents need that most, as they may dial the fault proxy's URL instead of the broker's.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

impl Credentials {
    pub fn of_url(url: &str) -> Credentials {
        let Some((start, at)) = userinfo_span(url) else {
            return Credentials::None;
        };
        let userinfo = &url[start..at];
        match userinfo.split_once(':') {
            Some((user, password)) => {
                Credentials::UserPassword(percent_decode(user), percent_decode(password))
            }
            None if userinfo.is_empty() => Credentials::None,
            None => Credentials::Token(percent_decode(userinfo)),
        }
    }

    /// `url` without its userinfo: what fleetsim hands async-nats once the credentials
    /// are options, since async-nats logs the address it dials (at debug level).
    pub fn strip(url: &str) -> String {
        match userinfo_span(url) {
            Some((start, at)) => format!("{}{}", &url[..start], &url[at + 1..]),
            None => url.to_string(),
        }
    }

    pub fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            Credentials::None => options,
            Credentials::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => options.token(token.clone()),
        }
    }
}

/// Never prints the secret, so a `{:?}` in a log cannot leak it.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::UserPassword(..) => "UserPassword(***)",
            Credentials::Token(_) => "Token(***)",
        })
    }
}

/// The host and port a URL points at, without scheme, userinfo or path:
/// `nats://u:p@h:4222/x` -> `h:4222`; of a comma-separated server list, the first's; a
/// bare `h:4222` as it is.
pub fn host_port(url: &str) -> &str {
    let first = url.split(',').next().unwrap_or(url).trim();
    let start = first.find("://").map_or(0, |i| i + 3);
    let authority = authority_of(&first[start..]);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The authority at the start of `rest` (a URL after its `scheme://`): up to the path.
fn authority_of(rest: &str) -> &str {
    &rest[..rest.find('/').unwrap_or(rest.len())]
}

/// Where a URL's userinfo is: (its first byte, the `@` after it), looked for in the
/// authority only, so an `@` in the path is not taken for one.
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    authority_of(&url[start..])
        .rfind('@')
        .map(|at| (start, start + at))
}

/// `%XX` escapes of a URL's userinfo decoded (a password may hold `@`, `:` or `/`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{Credentials, redact_url};

    #[test]
    fn url_credentials_become_connect_options_and_never_print() {
        let up = |u: &str, p: &str| Credentials::UserPassword(u.to_string(), p.to_string());
        assert_eq!(
            Credentials::of_url("nats://u:s3cret@h:4222"),
            up("u", "s3cret")
        );
        assert_eq!(
            Credentials::of_url("tls://sys:p%40ss%3Aw%2Fd@h:4222/x@y"),
            up("sys", "p@ss:w/d"),
            "escapes decoded; an @ in the path is not userinfo"
        );
        assert_eq!(
            Credentials::of_url("nats://t0ken@h"),
            Credentials::Token("t0ken".to_string())
        );
        assert_eq!(Credentials::of_url("nats://h:4222"), Credentials::None);
        assert_eq!(Credentials::of_url("nats://@h:4222"), Credentials::None);
        assert_eq!(Credentials::of_url("h:4222"), Credentials::None);
        let shown = format!("{:?}", Credentials::of_url("nats://u:s3cret@h:4222"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            Credentials::strip("nats://u:s3cret@h:4222"),
            "nats://h:4222"
        );
        assert_eq!(
            Credentials::strip("tls://t0k@h:4222/x@y"),
            "tls://h:4222/x@y"
        );
        assert_eq!(Credentials::strip("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn credentials_never_survive_redaction() {
        assert_eq!(redact_url("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://tok3n@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn host_port_is_the_authority_without_userinfo() {
        use super::host_port;
        assert_eq!(host_port("nats://u:p@h:4222/x@y"), "h:4222");
        assert_eq!(host_port("tls://h:4222/x@y"), "h:4222");
        assert_eq!(host_port("nats://a:1,nats://b:2"), "a:1");
        assert_eq!(host_port("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(host_port("nats://[::1]"), "[::1]");
    }

    #[test]
    fn an_at_sign_in_the_path_is_not_userinfo() {
        assert_eq!(redact_url("tls://h:4222/x@y"), "tls://h:4222/x@y");
        assert_eq!(redact_url("tls://u:p@h:4222/x@y"), "tls://***@h:4222/x@y");
        assert_eq!(redact_url("nats://u:p%40w@h"), "nats://***@h");
    }
}
