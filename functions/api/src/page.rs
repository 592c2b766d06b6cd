//! The sample login page: [`PageView`] filled into `page.html`, and the Content Security Policy
//! that lets its one inline script run by hash.

use std::sync::OnceLock;

use base64::Engine as _;
use lc_core::login::PageView;
use sha2::{Digest, Sha256};

use crate::login::LOGIN_PATH;

const PAGE_TEMPLATE: &str = include_str!("page.html");

/// The page's HTML. Every value is escaped; the plugin markup is ours.
pub fn render(view: &PageView) -> String {
    let plugin = match &view.signed_ref {
        Some(r) => format!(
            "<div class=\"fb-send-to-messenger\" messenger_app_id=\"{}\" page_id=\"{}\" data-ref=\"{}\" color=\"blue\" size=\"large\"></div>",
            escape_html(&view.app_id),
            escape_html(&view.page_id),
            escape_html(r)
        ),
        None => "<p class=\"note\">The Send to Messenger plugin is off: no signing key in the secret's ref_keys.</p>".to_string(),
    };
    let reset_note = if view.reset {
        "reset_messenger_state is on (?reset=1): for app admins re-testing the opt-in."
    } else {
        "App admins: add ?reset=1 to the address to re-test the opt-in (reset_messenger_state)."
    };
    fill(
        PAGE_TEMPLATE,
        &[
            ("APP_ID", escape_html(&view.app_id)),
            ("PAGE_ID", escape_html(&view.page_id)),
            ("GRAPH_VERSION", escape_html(&view.graph_version)),
            (
                "RESET",
                if view.reset { "true" } else { "false" }.to_string(),
            ),
            ("RESET_NOTE", escape_html(reset_note)),
            ("LOGIN_PATH", escape_html(LOGIN_PATH)),
            ("SDK_URL", escape_html(&view.sdk_url)),
            ("PLUGIN", plugin),
        ],
    )
}

/// Only this origin, the SDK's origin (scripts) and facebook.com (frames, the SDK's calls)
/// may be reached; the one inline script is allowed by its hash.
pub fn csp(sdk_url: &str) -> String {
    let sdk = sdk_origin(sdk_url)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self' '{}'{sdk}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' https://*.facebook.com; \
         frame-src https://*.facebook.com; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
        inline_script_hash()
    )
}

/// `scheme://host[:port]` of an absolute http(s) URL; `None` for a relative one (then `'self'`
/// covers it).
fn sdk_origin(url: &str) -> Option<String> {
    let rest_at = url.find("://")? + 3;
    let scheme = url.get(..rest_at - 3)?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let rest = url.get(rest_at..)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Characters that would end or extend a CSP source expression are not a host.
    if host.is_empty() || host.contains([';', ',', ' ', '\'', '"', '@']) {
        return None;
    }
    Some(format!("{}://{}", scheme.to_ascii_lowercase(), host))
}

/// `'sha256-…'` of the page's inline script (the template's only `<script>` without attributes).
fn inline_script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let script = inline_script(PAGE_TEMPLATE).unwrap_or_default();
        let digest = Sha256::digest(script.as_bytes());
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

fn inline_script(template: &str) -> Option<&str> {
    let start = template.find("<script>")? + "<script>".len();
    let len = template.get(start..)?.find("</script>")?;
    template.get(start..start + len)
}

/// Replaces every `{{NAME}}` in one pass (a value containing `{{…}}` is not expanded again).
/// Unknown names are left as they are.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lc_core::login::DEFAULT_SDK_URL;

    #[test]
    fn fill_is_single_pass() {
        let t = "a{{X}}b{{Y}}c{{Z}}d{{";
        let out = fill(t, &[("X", "{{Y}}".into()), ("Y", "y".into())]);
        assert_eq!(out, "a{{Y}}byc{{Z}}d{{");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn template_has_one_static_inline_script() {
        let script = inline_script(PAGE_TEMPLATE).unwrap();
        assert!(script.contains("FB.login"));
        // The page's evidence that the grant happened in this login (see lc_core::login).
        for part in [
            "FB.getLoginStatus",
            "'/me/permissions'",
            "return_scopes: true",
            "grantedScopes",
            "grant: grantEvidence(",
        ] {
            assert!(script.contains(part), "{part}");
        }
        assert!(
            !script.contains("{{"),
            "the hashed script must not change per request"
        );
        assert_eq!(PAGE_TEMPLATE.matches("<script>").count(), 1);
        assert!(inline_script_hash().starts_with("sha256-"));
    }

    #[test]
    fn sdk_origins() {
        assert_eq!(
            sdk_origin(DEFAULT_SDK_URL).as_deref(),
            Some("https://connect.facebook.net")
        );
        assert_eq!(
            sdk_origin("http://127.0.0.1:8080/stub.js?x=1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(sdk_origin("/stub.js"), None);
        assert_eq!(sdk_origin("javascript://x"), None);
        assert_eq!(sdk_origin("https://a.b; script-src *"), None);
    }
}
