//! The files the VMM writes into the delta layer (contract section 3), read after the
//! root is assembled. Parsers take text, so they are tested without a guest.

use std::fmt;

/// Path of each delta file in the assembled root.
pub const CMD: &str = "/.supermachine-cmd";
pub const WORKDIR: &str = "/.supermachine-workdir";
pub const USER: &str = "/.supermachine-user";
pub const HOSTNAME: &str = "/.supermachine-hostname";
pub const VOLUMES: &str = "/.supermachine-volumes";
pub const VIRTIOFS_BINDS: &str = "/.supermachine-virtiofs-binds";
/// The agent binary the delta carries.
pub const AGENT: &str = "/supermachine-agent";

/// A delta file whose content cannot be used: names the file, the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaError {
    pub file: &'static str,
    pub problem: String,
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad delta file {}: {}", self.file, self.problem)
    }
}

fn bad(file: &'static str, problem: impl Into<String>) -> DeltaError {
    DeltaError {
        file,
        problem: problem.into(),
    }
}

/// `/.supermachine-cmd`: the workload's argv, one argument per line.
pub fn parse_cmd(text: &str) -> Result<Vec<String>, DeltaError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    // One trailing newline ends the last argument; it is not an empty argument.
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if lines.is_empty() || lines[0].is_empty() {
        return Err(bad(
            CMD,
            "no program on the first line (the image needs an Entrypoint or Cmd)",
        ));
    }
    if lines.iter().any(|l| l.contains('\0')) {
        return Err(bad(CMD, "a NUL byte in an argument"));
    }
    Ok(lines.into_iter().map(str::to_string).collect())
}

/// `/.supermachine-workdir`: one absolute path.
pub fn parse_workdir(text: &str) -> Result<String, DeltaError> {
    let path = one_line(WORKDIR, text)?;
    if !path.starts_with('/') {
        return Err(bad(
            WORKDIR,
            format!("{path:?} is not an absolute path (set WorkingDir to /...)"),
        ));
    }
    Ok(path.to_string())
}

/// `/.supermachine-hostname`: 1 to 63 bytes, no whitespace.
pub fn parse_hostname(text: &str) -> Result<String, DeltaError> {
    let name = one_line(HOSTNAME, text)?;
    if name.len() > 63 || name.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(bad(
            HOSTNAME,
            format!("{name:?} is not a host name (1 to 63 characters, no spaces)"),
        ));
    }
    Ok(name.to_string())
}

/// `/.supermachine-volumes`: one absolute guest path per line, in disk order.
pub fn parse_volumes(text: &str) -> Result<Vec<String>, DeltaError> {
    let mut paths = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if !line.starts_with('/') {
            return Err(bad(
                VOLUMES,
                format!("{line:?} is not an absolute guest path"),
            ));
        }
        paths.push(line.to_string());
    }
    Ok(paths)
}

/// A virtio-fs share and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub tag: String,
    pub path: String,
}

/// `/.supermachine-virtiofs-binds`: `TAG<TAB>PATH` per line.
pub fn parse_binds(text: &str) -> Result<Vec<Bind>, DeltaError> {
    let mut binds = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match line.split_once('\t') {
            Some((tag, path)) if !tag.is_empty() && path.starts_with('/') => binds.push(Bind {
                tag: tag.to_string(),
                path: path.to_string(),
            }),
            _ => {
                return Err(bad(
                    VIRTIOFS_BINDS,
                    format!("{line:?} is not TAG<tab>/absolute/path"),
                ))
            }
        }
    }
    Ok(binds)
}

fn one_line<'a>(file: &'static str, text: &'a str) -> Result<&'a str, DeltaError> {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    if trimmed.is_empty() {
        return Err(bad(file, "empty (leave the file out instead)"));
    }
    if trimmed.contains('\n') {
        return Err(bad(file, "more than one line"));
    }
    Ok(trimmed)
}

/// Who the workload runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from `/etc/group` (only when the user was named or found).
    pub groups: Vec<u32>,
    /// `HOME` for the workload, from `/etc/passwd` when the user is listed there.
    pub home: Option<String>,
}

impl Identity {
    pub fn root() -> Identity {
        Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: Some("/root".into()),
        }
    }
}

/// Resolves an OCI `User` (`user`, `uid`, `user:group`, `uid:gid`) against the
/// container's `/etc/passwd` and `/etc/group` text, as container runtimes do.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Identity, DeltaError> {
    let spec = one_line(USER, spec)?;
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let matches = f[0] == user
            || (user.parse::<u32>().ok() == f[2].parse().ok() && user.parse::<u32>().is_ok());
        matches.then(|| {
            (
                f[0].to_string(),
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let (name, uid, gid, home) = match (entry, user.parse::<u32>()) {
        (Some((name, Some(uid), Some(gid), home)), _) => (Some(name), uid, gid, Some(home)),
        (_, Ok(uid)) => (None, uid, uid, None),
        _ => {
            return Err(bad(
                USER,
                format!("user {user:?} is not in the image's /etc/passwd (use a number or add it)"),
            ))
        }
    };
    let gid = match grp {
        None => gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse::<u32>().ok())
                        .flatten()
                })
                .ok_or_else(|| {
                    bad(
                        USER,
                        format!(
                            "group {g:?} is not in the image's /etc/group (use a number or add it)"
                        ),
                    )
                })?,
        },
    };
    let mut groups = vec![gid];
    if let Some(name) = &name {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken:x\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\nstaff:x:50:\napp:x:1000:\n";

    #[test]
    fn cmd_is_one_argument_per_line() {
        assert_eq!(
            parse_cmd("/bin/sh\n-c\necho a  b\n").unwrap(),
            ["/bin/sh", "-c", "echo a  b"]
        );
        assert_eq!(parse_cmd("/bin/true").unwrap(), ["/bin/true"]);
        // An empty argument in the middle is kept.
        assert_eq!(parse_cmd("printf\n\nx\n").unwrap(), ["printf", "", "x"]);
    }

    #[test]
    fn empty_cmd_is_an_error_naming_the_file() {
        for text in ["", "\n", "\nfoo\n"] {
            let err = parse_cmd(text).unwrap_err();
            assert_eq!(err.file, CMD, "{text:?}");
            assert!(err
                .to_string()
                .starts_with("bad delta file /.supermachine-cmd: no program"));
        }
    }

    #[test]
    fn workdir_and_hostname() {
        assert_eq!(parse_workdir("/srv/app\n").unwrap(), "/srv/app");
        assert!(parse_workdir("srv\n")
            .unwrap_err()
            .to_string()
            .contains("not an absolute path"));
        assert!(parse_workdir("/a\n/b\n").is_err());
        assert_eq!(parse_hostname("box-1\n").unwrap(), "box-1");
        assert!(parse_hostname("a b\n").is_err());
        assert!(parse_hostname(&"x".repeat(64)).is_err());
        assert!(parse_hostname("\n")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }

    #[test]
    fn volumes_and_binds() {
        assert_eq!(
            parse_volumes("/data\n/var/lib/db\n").unwrap(),
            ["/data", "/var/lib/db"]
        );
        assert!(parse_volumes("data\n").is_err());
        assert_eq!(
            parse_binds("src\t/work\n").unwrap(),
            [Bind {
                tag: "src".into(),
                path: "/work".into()
            }]
        );
        assert!(parse_binds("src /work\n").is_err());
        assert!(parse_binds("\t/work\n").is_err());
    }

    #[test]
    fn users_by_name_number_and_group() {
        let app = resolve_user("app\n", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone()),
            (1000, 1000, vec![1000, 10])
        );
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        let num = resolve_user("1000", PASSWD, GROUP).unwrap();
        assert_eq!((num.uid, num.gid), (1000, 1000));
        let unlisted = resolve_user("4242:7", PASSWD, GROUP).unwrap();
        assert_eq!(
            (unlisted.uid, unlisted.gid, unlisted.groups),
            (4242, 7, vec![7])
        );
        let named_group = resolve_user("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!(named_group.gid, 50);
    }

    #[test]
    fn unknown_user_or_group_is_an_error_with_the_fix() {
        let err = resolve_user("ghost", PASSWD, GROUP).unwrap_err();
        assert!(err
            .to_string()
            .contains("\"ghost\" is not in the image's /etc/passwd"));
        let err = resolve_user("app:ghosts", PASSWD, GROUP).unwrap_err();
        assert!(err.to_string().contains("group \"ghosts\""));
    }
}
