//! Just enough reading of HTML and sitemaps for the site check: the `lang` of `<html>`, the
//! `<title>`, the meta description, the canonical link, JSON-LD blocks and every `href`, with
//! HTML character references decoded. It reads markup as shopscribe writes it (and ordinary
//! well-formed pages); it is not a general HTML parser.

/// What the check needs of one page.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub lang: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub canonical: Option<String>,
    /// The `content` of `<meta name="robots">`.
    pub robots: Option<String>,
    pub json_ld: Vec<String>,
    pub links: Vec<String>,
}

impl Page {
    pub fn read(text: &str) -> Page {
        let mut page = Page::default();
        for tag in tags(text) {
            let name = tag_name(tag);
            match name.as_str() {
                "html" => page.lang = attr(tag, "lang"),
                "meta" if attr(tag, "name").as_deref() == Some("description") => {
                    page.description = attr(tag, "content");
                }
                "meta" if attr(tag, "name").as_deref() == Some("robots") => {
                    page.robots = attr(tag, "content");
                }
                "link" if attr(tag, "rel").as_deref() == Some("canonical") => {
                    page.canonical = attr(tag, "href");
                }
                "a" => page.links.extend(attr(tag, "href")),
                _ => {}
            }
        }
        page.title = between(text, "<title>", "</title>").map(|t| decode(t.trim()));
        let mut rest = text;
        while let Some(start) = rest.find("<script type=\"application/ld+json\">") {
            let after = &rest[start + "<script type=\"application/ld+json\">".len()..];
            let Some(end) = after.find("</script>") else {
                break;
            };
            page.json_ld.push(after[..end].to_string());
            rest = &after[end..];
        }
        page
    }

    /// The page asks search engines not to index it.
    pub fn noindex(&self) -> bool {
        self.robots.as_deref().is_some_and(|r| {
            r.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("noindex"))
        })
    }
}

/// The `<loc>` values of a sitemap or sitemap index.
pub fn locs(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<loc>") {
        let after = &rest[start + 5..];
        let Some(end) = after.find("</loc>") else {
            break;
        };
        out.push(decode(after[..end].trim()));
        rest = &after[end..];
    }
    out
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The opening tags of a document (`<name …>`), comments and closing tags left out.
fn tags(text: &str) -> impl Iterator<Item = &str> {
    text.split('<').skip(1).filter_map(|t| {
        if t.starts_with('/') || t.starts_with('!') {
            return None;
        }
        t.split_once('>').map(|(tag, _)| tag)
    })
}

fn tag_name(tag: &str) -> String {
    tag.split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The decoded value of a double-quoted attribute.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(decode(&tag[start..end]))
}

/// Decodes the character references minijinja and XML escaping write (and numeric ones).
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_check_needs() {
        let p = Page::read(
            "<!doctype html><html lang=\"en\"><head><title> A &amp; B </title>\
             <meta name=\"robots\" content=\"noindex, follow\">\
             <meta name=\"description\" content=\"x &#x2f; y\"><link rel=\"canonical\" href=\"https:&#x2f;&#x2f;e.com&#x2f;a.html\">\
             <script type=\"application/ld+json\">{\"@type\":\"WebPage\"}</script></head>\
             <body><a href=\"b.html\">b</a><a class=\"x\" href=\"..&#x2f;index.html\">i</a></body></html>",
        );
        assert_eq!(p.lang.as_deref(), Some("en"));
        assert_eq!(p.title.as_deref(), Some("A & B"));
        assert_eq!(p.description.as_deref(), Some("x / y"));
        assert!(p.noindex());
        assert!(!Page::read("<meta name=\"robots\" content=\"index, follow\">").noindex());
        assert_eq!(p.canonical.as_deref(), Some("https://e.com/a.html"));
        assert_eq!(p.json_ld, ["{\"@type\":\"WebPage\"}"]);
        assert_eq!(p.links, ["b.html", "../index.html"]);
        assert_eq!(
            locs("<url><loc>https://e.com/a&amp;b</loc></url>"),
            ["https://e.com/a&b"]
        );
    }
}
