//! A broker URL's userinfo, parsed once: the credentials it carries, the URL without
//! them (what fleetsim dials) and the URL with them masked (what it logs and writes).
//! The userinfo is the authority's (`user:pass@` before the first `/`). NATS URLs carry
//! no path, so an `@` after a `/` with no userinfo before it is taken for the end of a
//! userinfo whose password holds an unescaped `/` (`nats://u:pa/ss@h`): a secret is masked
//! even where the URL is malformed, at the price of masking a real path's `@` too.
//!
//! [`Credentials`] also carries the CA a connection trusts, so TLS reaches every
//! connection by the same path as the secrets.

use std::path::PathBuf;

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

/// What a fleetsim connection presents and trusts to be let into the broker: its
/// authentication and the CA certificate it trusts. One value holds both so that every
/// connection (agents, provisioning, probes, the advisory tap) gets the same security from
/// one [`Credentials::apply`], and an agent dialling the fault proxy's plain URL still
/// authenticates and verifies the broker behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub auth: Auth,
    /// A CA certificate (PEM) to trust besides the system's roots: the embedded broker's
    /// own, or an external broker's `tls_ca`. Set, it also requires TLS of the
    /// connection, whatever the URL's scheme (the proxy's URL is `nats://`).
    pub tls_ca: Option<PathBuf>,
}

/// How a client authenticates.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
    /// The seed of a user nkey (`SU...`): the client signs the server's nonce with it.
    NKey(String),
}

impl Auth {
    /// The mode's name as scenarios spell it (`none`, `user`, `token`, `nkey`), for logs
    /// and results: never the secret.
    pub fn mode(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::UserPassword(..) => "user",
            Auth::Token(_) => "token",
            Auth::NKey(_) => "nkey",
        }
    }
}

/// Never prints the secret, so a `{:?}` in a log cannot leak it.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::UserPassword(..) => "UserPassword(***)",
            Auth::Token(_) => "Token(***)",
            Auth::NKey(_) => "NKey(***)",
        })
    }
}

impl Credentials {
    /// The credentials of a `nats://user:password@host` or `nats://token@host` URL, the
    /// forms the NATS tools accept. async-nats 0.51 parses such a URL but never sends its
    /// userinfo, so every connection fleetsim makes applies them as connect options; the
    /// agents need that most, as they may dial the fault proxy's URL instead of the
    /// broker's.
    pub fn of_url(url: &str) -> Credentials {
        Credentials {
            auth: Auth::of_url(url),
            tls_ca: None,
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

    pub fn apply<O: Secure>(&self, options: O) -> O {
        let options = match &self.auth {
            Auth::None => options,
            Auth::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => options.token(token.clone()),
            Auth::NKey(seed) => options.nkey(seed.clone()),
        };
        match &self.tls_ca {
            // async-nats reads the file at each connect: a missing one is a connect error
            // that names it, not a panic.
            Some(ca) => options.add_root_certificates(ca.clone()).require_tls(true),
            None => options,
        }
    }
}

impl Auth {
    fn of_url(url: &str) -> Auth {
        let Some((start, at)) = userinfo_span(url) else {
            return Auth::None;
        };
        let userinfo = &url[start..at];
        match userinfo.split_once(':') {
            Some((user, password)) => {
                Auth::UserPassword(percent_decode(user), percent_decode(password))
            }
            None if userinfo.is_empty() => Auth::None,
            None => Auth::Token(percent_decode(userinfo)),
        }
    }
}

/// The connect options of either async-nats version the agents may run (the same
/// methods on two types), as far as [`Credentials::apply`] sets them.
pub trait Secure: Sized {
    fn user_and_password(self, user: String, password: String) -> Self;
    fn token(self, token: String) -> Self;
    fn nkey(self, seed: String) -> Self;
    fn add_root_certificates(self, ca: PathBuf) -> Self;
    fn require_tls(self, required: bool) -> Self;
}

macro_rules! secure {
    ($options:ty) => {
        impl Secure for $options {
            fn user_and_password(self, user: String, password: String) -> Self {
                <$options>::user_and_password(self, user, password)
            }
            fn token(self, token: String) -> Self {
                <$options>::token(self, token)
            }
            fn nkey(self, seed: String) -> Self {
                <$options>::nkey(self, seed)
            }
            fn add_root_certificates(self, ca: PathBuf) -> Self {
                <$options>::add_root_certificates(self, ca)
            }
            fn require_tls(self, required: bool) -> Self {
                <$options>::require_tls(self, required)
            }
        }
    };
}
secure!(async_nats::ConnectOptions);
secure!(async_nats_050::ConnectOptions);

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
    use super::{Auth, Credentials, redact_url};

    #[test]
    fn url_credentials_become_connect_options_and_never_print() {
        let up = |u: &str, p: &str| Credentials {
            auth: Auth::UserPassword(u.to_string(), p.to_string()),
            tls_ca: None,
        };
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
            Credentials::of_url("nats://t0ken@h").auth,
            Auth::Token("t0ken".to_string())
        );
        assert_eq!(Credentials::of_url("nats://h:4222"), Credentials::default());
        assert_eq!(
            Credentials::of_url("nats://@h:4222"),
            Credentials::default()
        );
        assert_eq!(Credentials::of_url("h:4222"), Credentials::default());
        let shown = format!("{:?}", Credentials::of_url("nats://u:s3cret@h:4222"));
        assert!(!shown.contains("s3cret"), "{shown}");
        let nkey = Credentials {
            auth: Auth::NKey("SUs33d".to_string()),
            tls_ca: Some("/ca.pem".into()),
        };
        let shown = format!("{nkey:?}");
        assert!(
            !shown.contains("s33d") && shown.contains("ca.pem"),
            "{shown}"
        );
        assert_eq!(nkey.auth.mode(), "nkey");
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
            Credentials::of_url("nats://u:pa/ss@h:4222").auth,
            Auth::UserPassword("u".to_string(), "pa/ss".to_string())
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
