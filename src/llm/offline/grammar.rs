//! Small English helpers for the offline writer: a/an, singular/plural agreement, lists,
//! number words and sentence case, so templates never hand-write "a above" or "results is".

/// "a" or "an" for the word that follows. Acronyms go by the letter's name ("an SEO", "a UK");
/// "u" words by sound ("an upper", "a unique"); a few silent-h words and digits are known.
pub fn article(next: &str) -> &'static str {
    let word: String = next
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>();
    let lower = word.to_lowercase();
    let Some(first) = lower.chars().next() else {
        return "a";
    };
    if word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase()) {
        return if "aefhilmnorsx".contains(first) {
            "an"
        } else {
            "a"
        };
    }
    if first.is_ascii_digit() {
        let eleven = lower.starts_with("11") || lower.starts_with("18");
        let eighteen_like = eleven && (lower.len() == 2 || lower.len() == 5);
        return if first == '8' || eighteen_like {
            "an"
        } else {
            "a"
        };
    }
    const SOUNDS_LIKE_YOU: [&str; 6] = ["uni", "use", "usu", "uti", "ure", "eu"];
    const SILENT_H: [&str; 3] = ["hour", "honest", "honour"];
    if SOUNDS_LIKE_YOU.iter().any(|p| lower.starts_with(p)) || lower.starts_with("one") {
        return "a";
    }
    if SILENT_H.iter().any(|p| lower.starts_with(p)) || "aeiou".contains(first) {
        return "an";
    }
    "a"
}

/// `next` with its article: "an upper-half position".
pub fn with_article(next: &str) -> String {
    format!("{} {next}", article(next))
}

/// "a", "a and b", "a, b and c".
pub fn join(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// `one` for a single item, `many` otherwise ("is"/"are", "result"/"results").
pub fn agree<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The plural of a noun used as an entity label: "domain" → "domains", "category" → "categories".
pub fn plural(noun: &str) -> String {
    if let Some(stem) = noun.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if noun.ends_with(['s', 'x']) || noun.ends_with("ch") || noun.ends_with("sh") {
        return format!("{noun}es");
    }
    format!("{noun}s")
}

/// Small counts as words (the privacy guard only allows digits the prompt holds).
pub fn number_word(n: usize) -> Option<&'static str> {
    const WORDS: [&str; 21] = [
        "none",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    WORDS.get(n).copied()
}

/// "both", "all three", … for a group of `n` (empty for one).
pub fn quantifier(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        2 => "both".into(),
        n => number_word(n).map_or_else(|| "all".into(), |w| format!("all {w}")),
    }
}

pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Upper-cases the first letter unless the sentence opens with `name` (domains are written as
/// they are spelled: "bluebasket.com is …").
pub fn sentence_case(s: &str, name: &str) -> String {
    if !name.is_empty() && s.starts_with(name) {
        s.to_string()
    } else {
        capitalize(s)
    }
}

/// Lower-cases the first letter, to continue a sentence after a connective ("By contrast, its
/// visits …"); a sentence opening with `name` is left as it is.
pub fn continue_with(s: &str, name: &str) -> String {
    if !name.is_empty() && s.starts_with(name) {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// How a market code reads before "shop": "US", "UK", "German"; an unknown code as given.
pub fn market_adjective(code: &str) -> String {
    match code.to_ascii_uppercase().as_str() {
        "US" | "USA" => "US".into(),
        "UK" | "GB" => "UK".into(),
        "DE" => "German".into(),
        "FR" => "French".into(),
        "ES" => "Spanish".into(),
        "IT" => "Italian".into(),
        "NL" => "Dutch".into(),
        "CA" => "Canadian".into(),
        "AU" => "Australian".into(),
        _ => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_follow_the_sound() {
        for (word, a) in [
            ("above-median", "an"),
            ("upper-half", "an"),
            ("top-tier", "a"),
            ("bottom-10 %", "a"),
            ("unique", "a"),
            ("UK", "a"),
            ("US", "a"),
            ("SEO", "an"),
            ("hour", "an"),
            ("honest", "an"),
            ("8 %", "an"),
            ("18", "an"),
            ("11", "an"),
            ("180", "a"),
            ("German", "a"),
            ("online", "an"),
            ("one-off", "a"),
            ("European", "a"),
            ("", "a"),
        ] {
            assert_eq!(article(word), a, "{word}");
        }
        assert_eq!(
            with_article("upper-half position"),
            "an upper-half position"
        );
    }

    #[test]
    fn lists_plurals_and_agreement() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(join(&s(&[])), "");
        assert_eq!(join(&s(&["visits"])), "visits");
        assert_eq!(join(&s(&["visits", "orders"])), "visits and orders");
        assert_eq!(join(&s(&["a", "b", "c"])), "a, b and c");
        assert_eq!(agree(1, "is", "are"), "is");
        assert_eq!(agree(2, "is", "are"), "are");
        assert_eq!(plural("domain"), "domains");
        assert_eq!(plural("category"), "categories");
        assert_eq!(plural("day"), "days");
        assert_eq!(plural("box"), "boxes");
        assert_eq!(quantifier(1), "");
        assert_eq!(quantifier(2), "both");
        assert_eq!(quantifier(3), "all three");
        assert_eq!(quantifier(40), "all");
        assert_eq!(number_word(10), Some("ten"));
        assert_eq!(number_word(21), None);
    }

    #[test]
    fn sentence_case_keeps_the_name_as_spelled() {
        assert_eq!(sentence_case("visits are up.", "a.com"), "Visits are up.");
        assert_eq!(sentence_case("a.com is here.", "a.com"), "a.com is here.");
        assert_eq!(continue_with("Visits are up.", "a.com"), "visits are up.");
        assert_eq!(market_adjective("DE"), "German");
        assert_eq!(market_adjective("XY"), "XY");
    }
}
