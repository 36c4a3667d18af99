//! `--tcp-stdio HOST PORT`: a raw byte bridge between stdin/stdout and a TCP connection
//! (the runsc backend reaches guest ports through it; no framing).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// Copies both ways until the TCP side ends. Stdin's end half-closes the connection.
pub fn run(host: &str, port: u16) -> io::Result<()> {
    let stream = TcpStream::connect((host, port))
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {host}:{port}: {e}")))?;
    let mut to_tcp = stream.try_clone()?;
    std::thread::Builder::new()
        .name("stdin-to-tcp".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let _ = io::copy(&mut stdin, &mut to_tcp);
            let _ = to_tcp.shutdown(Shutdown::Write);
        })?;
    let mut from_tcp = stream;
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_tcp.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stdout.write_all(buf.get(..n).unwrap_or_default())?;
        stdout.flush()?;
    }
}
