//! The catalogues themselves: both parse, both carry the same messages, and the workshop
//! seed's lines are kept character for character.

use charla_i18n::Lang;

#[test]
fn both_catalogues_parse_and_carry_the_same_messages() {
    let problems = charla_i18n::catalogue_problems();
    assert!(
        problems.is_empty(),
        "catalogue problems:\n  {}",
        problems.join("\n  ")
    );
    assert!(Lang::En.ids().len() > 10 && Lang::En.ids().len() == Lang::Es.ids().len());
}

#[test]
fn seed_lines_in_spanish() {
    assert_eq!(
        Lang::Es.sent("Juan", "Hola María!"),
        "📤 Enviado: [Juan] Hola María!"
    );
    assert_eq!(
        Lang::Es.received("Juan", "Hola María!", "14:30:25"),
        "📥 Recibido: [Juan] Hola María! (14:30:25)"
    );
    assert_eq!(Lang::Es.exiting(2), "👋 Saliendo... Mensajes recibidos: 2");
    assert_eq!(Lang::Es.ask_name(), "¿Cuál es tu nombre? ");
    assert_eq!(
        Lang::Es.listening("chat_cola", "queue"),
        "🔄 Escuchando mensajes... (sala 'chat_cola', modo queue)\nPresiona Ctrl+C para salir"
    );
    assert_eq!(Lang::En.sent("Juan", "Hola"), "📤 Sent: [Juan] Hola");
}

#[test]
fn language_names_and_browser_preferences() {
    assert_eq!("es_ES.UTF-8".parse::<Lang>(), Ok(Lang::Es));
    assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
    assert!("fr".parse::<Lang>().is_err());
    assert_eq!(
        Lang::from_accept_language("es-ES,es;q=0.9,en;q=0.8"),
        Lang::Es
    );
    assert_eq!(
        Lang::from_accept_language("fr-FR,en;q=0.5,es;q=0.7"),
        Lang::Es
    );
    assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::En);
    assert_eq!(Lang::from_accept_language("de, fr"), Lang::En);
    assert_eq!(Lang::from_accept_language(""), Lang::En);
    assert_eq!(Lang::from_accept_language("es;q=0, en"), Lang::En);
}

#[test]
fn a_missing_argument_is_left_for_the_page_to_fill() {
    assert_eq!(
        Lang::Es.tr("hello", &[]),
        "¡Hola {$name}! Escribe mensajes (o 'salir' para terminar)"
    );
    // An unknown id shows itself rather than nothing.
    assert_eq!(Lang::Es.tr("no-such-message", &[]), "no-such-message");
}
