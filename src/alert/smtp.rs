//! Sending one message through the configured SMTP servers, in order, until one takes it.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::alert::{AlertSettings, TlsMode};

/// Sends `subject` and `body` to `to`; the first server that accepts ends it. The error
/// says what each server said.
pub async fn send(
    settings: &AlertSettings,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<String, String> {
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| format!("from `{}`: {e}", settings.from))?;
    let to: Mailbox = to.parse().map_err(|e| format!("to `{to}`: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let credentials = match (&settings.user, &settings.password_file) {
        (Some(user), Some(file)) => {
            // Read as the configuration is: a regular file, that nobody else can write.
            let bytes = crate::config::source::read(
                file,
                crate::config::source::Trust::Config,
                crate::config::source::MAX_FILE_BYTES,
            )
            .map_err(|e| e.naming(file))?;
            let password = String::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8 text", file.display()))?;
            Some(Credentials::new(
                user.clone(),
                password.trim_end().to_string(),
            ))
        }
        _ => None,
    };
    let mut errors = Vec::new();
    for (host, port) in &settings.smtp {
        let tls = match settings.tls {
            TlsMode::None => Ok(Tls::None),
            mode => TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(!settings.tls_verify)
                .dangerous_accept_invalid_hostnames(!settings.tls_verify)
                .build()
                .map(|p| match mode {
                    TlsMode::Opportunistic => Tls::Opportunistic(p),
                    TlsMode::Starttls => Tls::Required(p),
                    _ => Tls::Wrapper(p),
                }),
        };
        let tls = match tls {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{host}:{port}: {e}"));
                continue;
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(*port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some(c) = &credentials {
            builder = builder.credentials(c.clone());
        }
        let transport = builder.build();
        match tokio::time::timeout(
            settings.timeout.saturating_mul(2),
            transport.send(message.clone()),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(format!("{host}:{port}")),
            Ok(Err(e)) => errors.push(format!("{host}:{port}: {e}")),
            Err(_) => errors.push(format!("{host}:{port}: timed out")),
        }
    }
    Err(errors.join("; "))
}
