//! minijinja set up the way the series needs it: strict undefined
//! variables, trailing newlines kept, fragments loaded from templates/.

use anyhow::Result;
use minijinja::{path_loader, Environment, UndefinedBehavior, Value};
use std::path::Path;

pub struct Templates {
    env: Environment<'static>,
}

/// A template of the series is wrong (syntax, unknown variable): a bad
/// series definition, whatever the tree (exit 1, not 125).
#[derive(Debug)]
pub struct TemplateError(String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TemplateError {}

/// Formats a minijinja error with the template name, line and its causes.
fn describe(e: &minijinja::Error, origin: &str, line_offset: usize) -> anyhow::Error {
    let line = e
        .line()
        .map(|l| format!(":{}", l + line_offset))
        .unwrap_or_default();
    let mut msg = format!("{origin}{line}: {}", e.kind());
    if let Some(d) = e.detail() {
        msg.push_str(&format!(": {d}"));
    }
    anyhow::Error::new(TemplateError(msg))
}

impl Templates {
    pub fn new(dir: &Path) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_loader(path_loader(dir));
        // Mail text wraps at 72 columns, whatever a value puts into it.
        env.add_filter("wordwrap", minijinja_contrib::filters::wordwrap);
        Templates { env }
    }

    /// Renders a fragment file from templates/.
    pub fn fragment(&self, name: &str, ctx: &Value) -> Result<String> {
        let origin = format!("templates/{name}");
        let t = self
            .env
            .get_template(name)
            .map_err(|e| describe(&e, &origin, 0))?;
        t.render(ctx).map_err(|e| describe(&e, &origin, 0))
    }

    /// Renders an inline template; `origin` and `line` say where it was written
    /// (the file and the line its text starts on), for error messages.
    pub fn inline(&self, origin: &str, line: usize, src: &str, ctx: &Value) -> Result<String> {
        self.env
            .render_str(src, ctx)
            .map_err(|e| describe(&e, origin, line.saturating_sub(1)))
    }

    /// Evaluates a `when:` expression.
    pub fn condition(&self, origin: &str, expr: &str, ctx: &Value) -> Result<bool> {
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e, origin, 0))?;
        let v = e.eval(ctx).map_err(|e| describe(&e, origin, 0))?;
        if v.is_undefined() {
            return Err(anyhow::Error::new(TemplateError(format!(
                "{origin}: undefined value in `when: {expr}`"
            ))));
        }
        Ok(v.is_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn unknown_variable_is_an_error_with_line() {
        let t = Templates::new(Path::new("/nonexistent"));
        let ctx = context! { facts => context! { a => true } };
        let err = t
            .inline("patches/0001-x.yaml", 10, "ok\n{{ facts.b }}\n", &ctx)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("patches/0001-x.yaml:11: undefined value"),
            "{err}"
        );
    }

    #[test]
    fn unknown_variable_in_condition_is_an_error() {
        let t = Templates::new(Path::new("/nonexistent"));
        let ctx = context! { facts => context! { a => true } };
        assert!(t.condition("x", "facts.a", &ctx).unwrap());
        assert!(t.condition("x", "facts.nope", &ctx).is_err());
    }

    #[test]
    fn fragment_errors_name_the_template_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f.c.j2"), "a\nb\n{{ nope }}\n").unwrap();
        let t = Templates::new(d.path());
        let err = t.fragment("f.c.j2", &context! {}).unwrap_err().to_string();
        assert!(
            err.starts_with("templates/f.c.j2:3: undefined value"),
            "{err}"
        );
    }

    #[test]
    fn keeps_trailing_newline_and_trims_blocks() {
        let t = Templates::new(Path::new("/nonexistent"));
        let out = t
            .inline(
                "x",
                1,
                "{% if a %}\nyes\n{% endif %}\n",
                &context! { a => true },
            )
            .unwrap();
        assert_eq!(out, "yes\n");
    }
}
