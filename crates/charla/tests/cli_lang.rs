//! The built binary speaks one language at a time: every subcommand's `--help`, a failed
//! connection, a refused command line and `charla web`'s refused flags, under `--lang es` and under `LANG=es_ES.UTF-8`, have no English line (and under
//! `--lang en`, no Spanish one). Issue 18, finding 12.

mod common;

use common::*;

const SUBCOMMANDS: [&str; 11] = [
    "", "check", "send", "listen", "bench", "serve", "chat", "archive", "web", "work", "dead",
];

/// Words and headings only English text has (clap's headings, the libraries' error words,
/// the most common English function words). Compared case-sensitively, on whole lines.
const ENGLISH: &[&str] = &[
    "Usage",
    "Options",
    "Arguments",
    "Commands",
    "Print ",
    "Examples",
    "default:",
    "possible values",
    "[env:",
    "the ",
    "The ",
    "broker at",
    "refused",
    "cannot",
    "Connection",
    " and ",
    " with ",
    " when ",
    " is ",
    " of ",
    " to ",
    " from ",
    " for ",
];

/// The same for Spanish text under `--lang en`.
const SPANISH: &[&str] = &[
    "Uso",
    "Opciones",
    "Argumentos",
    "Comandos",
    "Mostrar",
    "Ejemplos",
    "por defecto",
    "¿",
    " el ",
    " la ",
    " los ",
    " las ",
    " del ",
    " con ",
    " para ",
    " que ",
    "conexión",
    "rechaz",
];

/// The lines of `output` holding any of `words`, with the word.
fn offending(output: &str, words: &[&str]) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            words
                .iter()
                .find(|w| line.contains(*w))
                .map(|w| format!("{w:?} in: {line}"))
        })
        .collect()
}

fn help(lang_args: &[&str], env_lang: &str, sub: &str) -> String {
    let mut cmd = charla("redis://127.0.0.1:1");
    cmd.env("LANG", env_lang).args(lang_args);
    if !sub.is_empty() {
        cmd.arg(sub);
    }
    let out = run(cmd.arg("--help"), b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{sub} --help: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A `charla send` to a port where nothing listens: the error line.
fn refused(lang_args: &[&str], env_lang: &str) -> String {
    let port = charla_testkit::free_port();
    let mut cmd = charla(&format!("redis://127.0.0.1:{port}"));
    cmd.env("LANG", env_lang)
        .args(lang_args)
        .args(["send", "--name", "Ana", "hola"]);
    let out = run(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(1));
    text(&out.stderr)
}

/// `charla web` with flags it refuses itself (after clap took them, before any connection):
/// the error lines.
fn web_refused(lang_args: &[&str], env_lang: &str, web_args: &[&str]) -> String {
    let mut cmd = charla("redis://127.0.0.1:1");
    cmd.env("LANG", env_lang)
        .args(lang_args)
        .arg("web")
        .args(web_args);
    let out = run(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(1), "web {web_args:?}");
    text(&out.stderr)
}

/// The refusals `web_refused` checks: the flags, and a phrase of the line in each language.
const WEB_REFUSALS: [(&[&str], &str, &str); 2] = [
    (
        &["--rate", "0"],
        "--rate debe ser mayor que 0",
        "--rate must be above 0",
    ),
    (
        &["--auth", "password"],
        "--auth password necesita --auth-password-file",
        "--auth password needs --auth-password-file",
    ),
];

#[test]
fn spanish_help_and_errors_have_no_english_line() {
    for (flags, env) in [(&["--lang", "es"][..], "C.UTF-8"), (&[][..], "es_ES.UTF-8")] {
        let mut bad = Vec::new();
        for sub in SUBCOMMANDS {
            let out = help(flags, env, sub);
            assert!(out.contains("Uso: charla"), "{sub}: {out}");
            assert!(out.contains("Opciones:"), "{sub}: {out}");
            bad.extend(
                offending(&out, ENGLISH)
                    .into_iter()
                    .map(|l| format!("{sub}: {l}")),
            );
        }
        let err = refused(flags, env);
        assert!(err.contains("la conexión fue rechazada"), "{err}");
        bad.extend(offending(&err, ENGLISH));
        // A command line clap refuses: clap's own words are English.
        let mut cmd = charla("redis://127.0.0.1:1");
        cmd.env("LANG", env)
            .args(flags)
            .args(["send", "--no-such-flag"]);
        let out = run(&mut cmd, b"");
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(
            err.contains("argumento inesperado '--no-such-flag'"),
            "{err}"
        );
        bad.extend(offending(&err, ENGLISH));
        for (web_args, spanish, _) in WEB_REFUSALS {
            let err = web_refused(flags, env, web_args);
            assert!(err.contains(spanish), "{err}");
            bad.extend(offending(&err, ENGLISH));
        }
        assert!(
            bad.is_empty(),
            "English under {flags:?} LANG={env}:\n{}",
            bad.join("\n")
        );
    }
}

#[test]
fn english_help_and_errors_have_no_spanish_line() {
    let mut bad = Vec::new();
    for sub in SUBCOMMANDS {
        let out = help(&["--lang", "en"], "es_ES.UTF-8", sub);
        assert!(out.contains("Usage: charla"), "{sub}: {out}");
        // The examples quote the workshop's Spanish ("Hola María!"): not a sentence of output.
        let out = out.replace("\"Hola María!\"", "");
        bad.extend(
            offending(&out, SPANISH)
                .into_iter()
                .map(|l| format!("{sub}: {l}")),
        );
    }
    let err = refused(&["--lang", "en"], "es_ES.UTF-8");
    assert!(err.contains("the connection was refused"), "{err}");
    bad.extend(offending(&err, SPANISH));
    for (web_args, _, english) in WEB_REFUSALS {
        let err = web_refused(&["--lang", "en"], "es_ES.UTF-8", web_args);
        assert!(err.contains(english), "{err}");
        bad.extend(offending(&err, SPANISH));
    }
    assert!(
        bad.is_empty(),
        "Spanish under --lang en:\n{}",
        bad.join("\n")
    );
}
