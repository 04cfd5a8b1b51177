//! A broker URL's userinfo, parsed once: the credentials it carries, the URL without
//! them (what fleetsim dials) and the URL with them masked (what it logs and writes).
//! The userinfo is the authority's (`user:pass@` before the first `/`). NATS URLs carry
//! no path, so an `@` after a `/` with no userinfo before it is taken for the end of a
//! userinfo whose password holds an unescaped `/` (`nats://u:pa/ss@h`): a secret is masked
//! even where the URL is malformed, at the price of masking a real path's `@` too.

/// Removes `user:pass@` or `token@` from a URL, or from each URL of a comma-separated
/// server list, so it can be logged and written to results.
pub fn redact_url(url: &str) -> String {
    each_server(url, |server| match userinfo_span(server) {
        Some((start, at)) => format!("{}***@{}", &server[..start], &server[at + 1..]),
        None => server.to_string(),
    })
}

/// `f` applied to each URL of a comma-separated server list, joined again.
fn each_server(url: &str, f: impl Fn(&str) -> String) -> String {
    url.split(',').map(f).collect::<Vec<_>>().join(",")
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
        each_server(url, |server| match userinfo_span(server) {
            Some((start, at)) => format!("{}{}", &server[..start], &server[at + 1..]),
            None => server.to_string(),
        })
    }

    pub fn apply<O: Authenticate>(&self, options: O) -> O {
        match self {
            Credentials::None => options,
            Credentials::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => options.token(token.clone()),
        }
    }
}

/// The connect options of either async-nats version the agents may run (the same
/// methods, two types).
pub trait Authenticate: Sized {
    fn user_and_password(self, user: String, password: String) -> Self;
    fn token(self, token: String) -> Self;
}

macro_rules! authenticate {
    ($options:ty) => {
        impl Authenticate for $options {
            fn user_and_password(self, user: String, password: String) -> Self {
                <$options>::user_and_password(self, user, password)
            }
            fn token(self, token: String) -> Self {
                <$options>::token(self, token)
            }
        }
    };
}
authenticate!(async_nats::ConnectOptions);
authenticate!(async_nats_050::ConnectOptions);

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
    let start = match userinfo_span(first) {
        Some((_, at)) => at + 1,
        None => first.find("://").map_or(0, |i| i + 3),
    };
    authority_of(&first[start..])
}

/// The authority at the start of `rest` (a URL after its `scheme://`): up to the path.
fn authority_of(rest: &str) -> &str {
    &rest[..rest.find('/').unwrap_or(rest.len())]
}

/// Where a URL's userinfo is: (its first byte, the `@` after it). The authority's, when
/// it has one; otherwise up to the URL's last `@`, if any (see the module doc: a
/// password with an unescaped `/` must not leak through a redaction).
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    authority_of(rest)
        .rfind('@')
        .or_else(|| rest.rfind('@'))
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
        assert_eq!(host_port("nats://u:pa/ss@h:4222"), "h:4222");
        assert_eq!(host_port("nats://a:1,nats://b:2"), "a:1");
        assert_eq!(host_port("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(host_port("nats://[::1]"), "[::1]");
    }

    #[test]
    fn an_at_sign_after_the_userinfo_is_kept_and_a_slash_in_a_password_still_masked() {
        assert_eq!(redact_url("tls://u:p@h:4222/x@y"), "tls://***@h:4222/x@y");
        assert_eq!(redact_url("nats://u:p%40w@h"), "nats://***@h");
        // An unescaped `/` in the password: the authority ends early, and without the
        // fallback "pa/ss" would be written out.
        assert_eq!(redact_url("nats://u:pa/ss@h:4222"), "nats://***@h:4222");
        assert_eq!(
            Credentials::of_url("nats://u:pa/ss@h:4222"),
            Credentials::UserPassword("u".to_string(), "pa/ss".to_string())
        );
        assert_eq!(Credentials::strip("nats://u:pa/ss@h:4222"), "nats://h:4222");
        // With no userinfo, a path's `@` is masked too: NATS URLs carry no path, so it is
        // far likelier a malformed password than a path.
        assert_eq!(redact_url("tls://h:4222/x@y"), "tls://***@y");
    }

    #[test]
    fn every_server_of_a_list_is_redacted_and_stripped() {
        let list = "nats://u:p1@h1:4222,nats://u:p2@h2:4222";
        assert_eq!(redact_url(list), "nats://***@h1:4222,nats://***@h2:4222");
        assert_eq!(Credentials::strip(list), "nats://h1:4222,nats://h2:4222");
    }
}
