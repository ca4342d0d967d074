//! `guardian diagnose JOB` and `guardian reports JOB [LAST|N|NAME]`.

use std::io::Write;

use crate::control::protocol::{Request, Response};

use super::Exit;
use super::commands::{Socket, answer};

pub(super) fn diagnose(socket: &Socket, job: String, json: bool) -> anyhow::Result<Exit> {
    print_report(socket.call(&Request::Diagnose { job })?, json)
}

pub(super) fn reports(
    socket: &Socket,
    job: String,
    which: Option<String>,
    json: bool,
) -> anyhow::Result<Exit> {
    let response = socket.call(&Request::Reports { job, which })?;
    let Response::Reports { job, reports } = response else {
        return print_report(response, json);
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else if reports.is_empty() {
        writeln!(out, "{job} has no reports")?;
    } else {
        for (i, e) in reports.iter().enumerate() {
            // N as `reports JOB N` takes it: 1 is the newest.
            let n = reports.len() - i;
            writeln!(
                out,
                "{n:>3}  {}  {}",
                e.name,
                crate::logtext::escape(&e.why)
            )?;
            writeln!(out, "     {}", crate::logtext::escape(&e.summary))?;
        }
    }
    Ok(Exit::Ok)
}

fn print_report(response: Response, json: bool) -> anyhow::Result<Exit> {
    let Response::Report { path, report } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(&*report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("path".into(), path.into());
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        out.write_all(report.text().as_bytes())?;
        if let Some(p) = path {
            writeln!(out, "\nkept in {p}")?;
        }
    }
    Ok(Exit::Ok)
}
