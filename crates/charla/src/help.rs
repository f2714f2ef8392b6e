//! `--help` in the user's language: the command line clap derives from [`crate::cli::Cli`],
//! with every text (about, argument help, value names, headings, usage) replaced from the
//! catalogue (charla-i18n).
//!
//! Why a walk over the built command rather than texts in the derive: clap's derive takes
//! its texts from doc comments, at compile time and in one language. The doc comments stay
//! for whoever reads the code; what a user reads is `help-…`, `cmd-…`, `arg-…` and `value-…`
//! in `locales/<lang>/charla.ftl`, and a test fails when an argument has no entry there.
//!
//! The language has to be known before parsing (the help is printed by the parse itself), so
//! [`lang_before_parsing`] reads `--lang` from argv, then `CHARLA_LANG`, then the locale.

use std::ffi::OsString;

use charla_i18n::Lang;
use clap::builder::Resettable;
use clap::{Arg, Command, CommandFactory};

use crate::cli::Cli;

/// The language `--lang X` / `--lang=X` names (before a `--`), else `CHARLA_LANG`, else the
/// locale (`LC_ALL`, `LC_MESSAGES`, `LANG`). A value that is not a language is left for the
/// parse to refuse.
pub fn lang_before_parsing(args: &[OsString]) -> Lang {
    let mut named = None;
    let mut iter = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if arg == "--lang" {
            named = iter.next().map(str::to_owned);
        } else if let Some(value) = arg.strip_prefix("--lang=") {
            named = Some(value.to_owned());
        }
    }
    named
        .or_else(|| std::env::var("CHARLA_LANG").ok())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(Lang::from_locale)
}

/// The command line with its texts in `lang`.
pub fn command(lang: Lang) -> Command {
    let mut cmd = Cli::command();
    // Built first, so the generated `--help`, `--version` and `help` subcommand exist (and the
    // global arguments are in every subcommand) when the texts are replaced.
    cmd.build();
    localize(cmd, lang, "charla")
}

/// A command line clap refused (or `--help`, `--version`, which clap reports the same way):
/// printed and the process ended, in `lang`. clap's own messages are English; in Spanish the
/// common kinds are said from the catalogue with the offending argument, exit code 2.
pub fn exit_on(e: clap::Error, lang: Lang) -> ! {
    use clap::error::{ContextKind, ErrorKind};
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shown || lang == Lang::En {
        e.exit()
    }
    let get = |kind: ContextKind| e.get(kind).map(|v| v.to_string()).unwrap_or_default();
    let arg = get(ContextKind::InvalidArg);
    let id = match e.kind() {
        ErrorKind::UnknownArgument => "usage-unknown-argument",
        ErrorKind::InvalidSubcommand => "usage-unknown-command",
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => "usage-invalid-value",
        ErrorKind::MissingRequiredArgument => "usage-missing",
        ErrorKind::ArgumentConflict => "usage-conflict",
        ErrorKind::NoEquals | ErrorKind::TooManyValues | ErrorKind::TooFewValues => {
            "usage-wrong-values"
        }
        _ => "usage-other",
    };
    let args: [(&str, &dyn std::fmt::Display); 4] = [
        ("arg", &arg),
        ("value", &get(ContextKind::InvalidValue)),
        ("command", &get(ContextKind::InvalidSubcommand)),
        ("other", &get(ContextKind::PriorArg)),
    ];
    eprintln!("❌ {}", lang.tr(id, &args));
    eprintln!("{}", lang.tr("usage-more", &[]));
    std::process::exit(2)
}

/// The catalogue id of an argument of command `path`: its own (`arg-send-name`) or, for the
/// global and shared ones, the common one (`arg-broker`).
pub fn arg_keys(path: &str, arg: &Arg) -> [String; 2] {
    let id = arg.get_id().as_str().replace('_', "-");
    [format!("arg-{path}-{id}"), format!("arg-{id}")]
}

/// The first of `keys` the catalogue has.
fn first_key(lang: Lang, keys: &[String]) -> Option<&str> {
    keys.iter().find(|k| lang.has(k)).map(String::as_str)
}

fn localize(cmd: Command, lang: Lang, path: &str) -> Command {
    let t = |id: &str| lang.tr(id, &[]);
    let mut cmd = cmd
        .help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{} {{usage}}\n\n{{all-args}}{{after-help}}",
            t("help-usage")
        ))
        .subcommand_help_heading(t("help-commands"))
        .subcommand_value_name(t("value-COMMAND"));
    let text = |key: &str| {
        let id = format!("cmd-{path}-{key}");
        lang.has(&id).then(|| lang.tr(&id, &[]))
    };
    if let Some(about) = text("about") {
        cmd = cmd.about(about);
    }
    // A long text of its own, or none: clap would otherwise show the English doc comment's.
    cmd = cmd.long_about(match text("long-about") {
        Some(t) => Resettable::Value(t.into()),
        None => Resettable::Reset,
    });
    if let Some(after) = text("after") {
        cmd = cmd.after_help(after);
    }
    let usage = usage(&cmd, lang);
    cmd = cmd.override_usage(usage);
    cmd = cmd.mut_args(|arg| localize_arg(arg, lang, path));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = name.clone();
        cmd = cmd.mut_subcommand(name, |sub| localize(sub, lang, &sub_path));
    }
    cmd
}

/// One argument: help from the catalogue (its default, environment variable and allowed
/// values said in the same language), value names, and the heading it is listed under.
fn localize_arg(arg: Arg, lang: Lang, path: &str) -> Arg {
    let keys = arg_keys(path, &arg);
    let mut help = match first_key(lang, &keys) {
        Some(key) => lang.tr(key, &[]),
        None => arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
    };
    // A flag's `false` default and its id as a value name say nothing: only for values.
    let takes_values = arg.get_action().takes_values();
    if takes_values && !arg.is_hide_default_value_set() && !arg.get_default_values().is_empty() {
        let values: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let values = values.join(", ");
        help.push_str(&lang.tr("help-default", &[("value", &values)]));
    }
    if let (false, Some(env)) = (arg.is_hide_env_set(), arg.get_env()) {
        let var = env.to_string_lossy();
        help.push_str(&lang.tr("help-env", &[("var", &var)]));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !values.is_empty() && !arg.is_hide_possible_values_set() && arg.get_num_args().is_some() {
        let values = values.join(", ");
        help.push_str(&lang.tr("help-values", &[("values", &values)]));
    }
    let heading = if arg.is_positional() {
        lang.tr("help-arguments", &[])
    } else {
        lang.tr("help-options", &[])
    };
    let value_names: Option<Vec<String>> = arg
        .get_value_names()
        .filter(|_| takes_values)
        .map(|names| names.iter().map(|n| value_name(lang, n)).collect());
    let mut arg = arg
        .help(help)
        .long_help(None::<&str>)
        .hide_default_value(true)
        .hide_env(true)
        .hide_possible_values(true)
        .help_heading(heading);
    if let Some(names) = value_names {
        arg = arg.value_names(names);
    }
    arg
}

/// A value name (`NAME`) in `lang`: `value-NAME` from the catalogue, else as it is.
fn value_name(lang: Lang, name: &str) -> String {
    let key = value_key(name);
    if lang.has(&key) {
        lang.tr(&key, &[])
    } else {
        name.to_owned()
    }
}

/// The catalogue id of a value name: `value-NAME`, with what a Fluent id cannot hold (`yes|no`,
/// spaces) as `-`.
fn value_key(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("value-{name}")
}

/// `charla send [OPCIONES] [MENSAJE]...`: clap's own usage line has English words in it.
fn usage(cmd: &Command, lang: Lang) -> String {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned();
    let mut parts = vec![name, format!("[{}]", lang.tr("value-OPTIONS", &[]))];
    for arg in cmd.get_positionals() {
        let value = arg
            .get_value_names()
            .and_then(|n| n.first())
            .map(|n| value_name(lang, n))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        let dots = if many { "..." } else { "" };
        parts.push(if arg.is_required_set() {
            format!("<{value}>{dots}")
        } else {
            format!("[{value}]{dots}")
        });
    }
    if cmd.has_subcommands() {
        let command = lang.tr("value-COMMAND", &[]);
        parts.push(if cmd.is_subcommand_required_set() {
            format!("<{command}>")
        } else {
            format!("[{command}]")
        });
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and argument, as (command path, argument), generated ones included.
    fn all_args(cmd: &Command, path: &str, out: &mut Vec<(String, Arg)>) {
        for arg in cmd.get_arguments() {
            out.push((path.to_owned(), arg.clone()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, sub.get_name(), out);
        }
    }

    fn built() -> Command {
        let mut cmd = Cli::command();
        cmd.build();
        cmd
    }

    #[test]
    fn every_argument_and_command_has_its_text_in_both_languages() {
        let cmd = built();
        let mut args = Vec::new();
        all_args(&cmd, "charla", &mut args);
        let mut missing = Vec::new();
        for lang in Lang::ALL {
            for (path, arg) in &args {
                let keys = arg_keys(path, arg);
                if first_key(lang, &keys).is_none() {
                    missing.push(format!("{lang}: {} (or {})", keys[0], keys[1]));
                }
                let names = arg.get_value_names().unwrap_or_default();
                for name in names.iter().filter(|_| arg.get_action().takes_values()) {
                    if !lang.has(&value_key(name)) {
                        missing.push(format!("{lang}: {}", value_key(name)));
                    }
                }
            }
            let mut commands = vec!["charla".to_owned()];
            commands.extend(cmd.get_subcommands().map(|s| s.get_name().to_owned()));
            for c in commands {
                if !lang.has(&format!("cmd-{c}-about")) {
                    missing.push(format!("{lang}: cmd-{c}-about"));
                }
            }
            // The longer texts: examples, what `serve` is, where the chat logs.
            for id in [
                "cmd-charla-long-about",
                "cmd-charla-after",
                "cmd-serve-after",
                "cmd-chat-after",
            ] {
                if !lang.has(id) {
                    missing.push(format!("{lang}: {id}"));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "not in the catalogue:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_language_is_read_before_parsing() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            lang_before_parsing(&argv(&["charla", "--lang", "es", "send"])),
            Lang::Es
        );
        assert_eq!(
            lang_before_parsing(&argv(&["charla", "send", "--lang=es"])),
            Lang::Es
        );
        assert_eq!(
            lang_before_parsing(&argv(&[
                "charla", "--lang", "en", "send", "--", "--lang", "es"
            ])),
            Lang::En
        );
    }

    /// Not a check: prints, in the catalogue's format, what an argument without an entry says
    /// today (`cargo test -p charla --bin charla dump_missing -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn dump_missing() {
        let cmd = built();
        let mut args = Vec::new();
        all_args(&cmd, "charla", &mut args);
        let mut seen = std::collections::BTreeSet::new();
        for (path, arg) in &args {
            let keys = arg_keys(path, arg);
            if first_key(Lang::En, &keys).is_none() && seen.insert(keys[0].clone()) {
                let help = arg
                    .get_long_help()
                    .or(arg.get_help())
                    .map(|h| h.to_string());
                println!(
                    "{} = {}",
                    keys[0],
                    help.unwrap_or_default().replace('\n', "\n    ")
                );
            }
        }
        fn cmds(cmd: &Command, path: &str) {
            for (key, text) in [
                ("about", cmd.get_about()),
                ("long-about", cmd.get_long_about()),
                ("after", cmd.get_after_help()),
            ] {
                if let Some(text) = text {
                    println!(
                        "cmd-{path}-{key} = {}",
                        text.to_string().replace('\n', "\n    ")
                    );
                }
            }
            for sub in cmd.get_subcommands() {
                cmds(sub, sub.get_name());
            }
        }
        cmds(&cmd, "charla");
    }
}
