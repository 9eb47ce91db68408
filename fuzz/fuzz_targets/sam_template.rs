//! The SAM template parser (`esb_cli::sam::parse`): arbitrary template text,
//! resolved as if it sat next to the `full` fixture's code.
//!
//! Properties: no panic (libyaml-safer's own panics, which the parser
//! catches, excepted); an error names the template and a position inside
//! the text (1-based, at most one line past the end); so does every warning;
//! parsing the same text twice gives the same result.
#![no_main]

use std::path::Path;
use std::sync::Once;

use esb_cli::sam::{parse, LoadOptions, TemplateError};
use libfuzzer_sys::fuzz_target;

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/cli/tests/fixtures/sam/full/template.yaml"
);

/// Lines as YAML counts them: `\r\n`, `\r`, `\n`, NEL, LS and PS end one.
fn yaml_lines(text: &str) -> usize {
    let breaks = text.replace("\r\n", "\n");
    1 + breaks
        .chars()
        .filter(|c| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

fn check_position(text: &str, line: usize, column: usize, what: &str) {
    let lines = yaml_lines(text);
    assert!(
        line >= 1 && column >= 1 && line <= lines + 1,
        "{what} at {line}:{column} of a {lines}-line template"
    );
}

/// libFuzzer's panic hook aborts on every panic, also on the libyaml-safer
/// panics `sam::yaml` catches and turns into errors; let those unwind.
fn let_yaml_panics_unwind() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_yaml = info
                .location()
                .is_some_and(|l| l.file().contains("libyaml-safer"));
            if !in_yaml {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_yaml_panics_unwind();
    let text = String::from_utf8_lossy(data);
    let path = Path::new(TEMPLATE);
    let options = LoadOptions::default();
    let first = parse(&text, path, &options);
    match &first {
        Ok(app) => {
            for warning in &app.warnings {
                check_position(&text, warning.line, warning.column, "a warning");
            }
        }
        Err(TemplateError {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, path);
            assert!(!message.is_empty());
            check_position(&text, *line, *column, message);
        }
    }
    assert_eq!(
        first,
        parse(&text, path, &options),
        "parsing is not deterministic"
    );
});
