//! A minimal DCI service for the docker runtime's tests (std only, so its
//! image holds nothing but it and libc).
//!
//! `dci-test-service service <name> --listen <addr> [--exit-with-stdin]`
//! (exits when its standard input ends, like `dci service`) binds `addr`, prints
//! `listening on http://<bound addr>` and answers HTTP GET requests:
//! `/health` → `{"ok":true}`, `/service` → the name, `/env/<KEY>` → the
//! variable's value, `/exit` → replies, then exits with status 3.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, listen) = match args.as_slice() {
        [cmd, name, flag, addr, rest @ ..] if cmd == "service" && flag == "--listen" => {
            if rest.iter().any(|a| a == "--exit-with-stdin") {
                std::thread::spawn(|| {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    std::process::exit(0);
                });
            }
            (name.clone(), addr.clone())
        }
        _ => {
            eprintln!("usage: dci-test-service service <name> --listen <addr> [--exit-with-stdin], found {args:?}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().expect("bound socket has an address");
    let mut out = std::io::stdout();
    if writeln!(out, "listening on http://{addr}").and_then(|()| out.flush()).is_err() {
        return ExitCode::from(1);
    }
    eprintln!("{name}: serving on {addr}");
    for stream in listener.incoming().flatten() {
        if serve(stream, &name) {
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

/// Answers one request; true when it asked the service to exit.
fn serve(mut stream: TcpStream, name: &str) -> bool {
    let mut request_line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut request_line).is_err() {
        return false;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body, exit) = match path {
        "/health" => ("200 OK", "{\"ok\":true}".to_owned(), false),
        "/service" => ("200 OK", name.to_owned(), false),
        "/exit" => ("200 OK", "bye".to_owned(), true),
        p => match p.strip_prefix("/env/") {
            Some(key) => match std::env::var(key) {
                Ok(v) => ("200 OK", v, false),
                Err(_) => ("404 Not Found", format!("no variable {key}"), false),
            },
            None => ("404 Not Found", format!("no path {p}"), false),
        },
    };
    let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = stream.flush();
    exit
}
