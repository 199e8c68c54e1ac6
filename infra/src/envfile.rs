//! `infra/local.env`, read by dotenvy's rules: `#` comments, an optional
//! `export`, single or double quotes (values holding `=` are quoted).

use std::collections::HashMap;
use std::path::Path;

/// The settings in `text`. A line that is not a setting is skipped, as it
/// always was here, rather than stopping the local stack over one stray line.
pub fn parse(text: &str) -> HashMap<String, String> {
    dotenvy::from_read_iter(text.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

pub fn load(path: &Path) -> std::io::Result<HashMap<String, String>> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_dotenv_lines() {
        let m = super::parse("# c\nA=1\n export B = \"two words\" \nC='x=y'\nbad line\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn follows_dotenv_rules_the_old_parser_did_not() {
        // A comment after a value is not part of it; single quotes keep `$` literal.
        let m = super::parse("A=1 # note\nB='$NOT_EXPANDED'\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "$NOT_EXPANDED");
    }

    #[test]
    fn reads_the_local_env_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("local.env");
        let m = super::load(&path).unwrap();
        assert_eq!(
            m["CHANNEL_LOCATIONS"],
            "web=warehouse,pos=downtown,marketplace=warehouse"
        );
        assert_eq!(m["SHOPIFY_LOCATIONS"], "1001=warehouse,1002=downtown");
        assert_eq!(m["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
        // Braces are not expanded; the JSON keeps its quotes.
        assert_eq!(m["SHOPIFY_ADMIN_URL"], "http://127.0.0.1:4568/{shop}");
        assert_eq!(
            m["SHOPIFY_TOKENS"],
            r#"{"stockroom-demo.myshopify.com": "shpat_local_demo_token_0001"}"#
        );
        assert_eq!(
            m["CONNECTORS"],
            "web=shopify:stockroom-demo.myshopify.com@1001/revert"
        );
        assert!(!m.keys().any(|k| k.starts_with('#')));
    }
}
