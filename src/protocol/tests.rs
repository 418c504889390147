//! The protocol's unit tests: every client frame parses, every refusal
//! says why.

use super::*;
use super::{client, fields};
use serde_json::json;

#[test]
fn error_code_names_are_the_wire_names() {
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

#[test]
fn parses_every_client_frame() {
    assert_eq!(
        parse(r#"{"type":"send","room":"general","text":"hi","ref":7}"#),
        Ok(ClientFrame::Send {
            room: "general".into(),
            text: "hi".into(),
            reference: Some(json!(7)),
            delivery: Delivery::Reliable,
            retry: false,
        })
    );
    assert_eq!(
        parse(r#"{"type":"history","room":"r"}"#),
        Ok(ClientFrame::History {
            room: "r".into(),
            before: None,
            limit: None,
        })
    );
    assert!(matches!(
        parse(r#"{"type":"direct","to":"bob","text":"x"}"#),
        Ok(ClientFrame::Direct {
            options: MessageOptions {
                delivery: Delivery::Reliable,
                confirm: false,
                ..
            },
            ..
        })
    ));
    assert!(matches!(
        parse(r#"{"type":"group","to":["a","b"],"text":"x","delivery":"fast","confirm":true}"#),
        Ok(ClientFrame::Group {
            options: MessageOptions {
                delivery: Delivery::Fast,
                confirm: true,
                ..
            },
            ..
        })
    ));
    assert_eq!(
        parse(r#"{"type":"fetch_missed"}"#),
        Ok(ClientFrame::FetchMissed { limit: None })
    );
    assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
    assert_eq!(ServerFrame::Pong.encode(), r#"{"type":"pong"}"#);
    assert_eq!(
        parse(r#"{"type":"send","room":"r","text":"x","delivery":"sometimes"}"#)
            .unwrap_err()
            .code,
        ErrorCode::InvalidFrame
    );
}

#[test]
fn tells_bad_input_apart() {
    assert_eq!(parse("{nope").unwrap_err().code, ErrorCode::Malformed);
    assert_eq!(parse("[1,2]").unwrap_err().code, ErrorCode::Malformed);
    let unknown = parse(r#"{"type":"shout","ref":"r1"}"#).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownType);
    assert_eq!(unknown.reference, Some(json!("r1")));
    let missing = parse(r#"{"type":"send","room":"x","ref":3}"#).unwrap_err();
    assert_eq!(missing.code, ErrorCode::InvalidFrame);
    assert!(missing.message.contains("text"), "{}", missing.message);
    assert_eq!(missing.reference, Some(json!(3)));
}

#[test]
fn a_retry_names_its_ref_and_a_ref_is_short() {
    assert!(matches!(
        parse(r#"{"type":"send","room":"r","text":"x","ref":"a-1","retry":true}"#),
        Ok(ClientFrame::Send { retry: true, .. })
    ));
    let unnamed = parse(r#"{"type":"direct","to":"bob","text":"x","retry":true}"#).unwrap_err();
    assert_eq!(unnamed.code, ErrorCode::InvalidFrame);
    let long = format!(
        r#"{{"type":"send","room":"r","text":"x","ref":"{}"}}"#,
        "r".repeat(MAX_REF_BYTES)
    );
    let refused = parse(&long).unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidFrame);
    assert_eq!(refused.reference, None, "a refused ref is not echoed");
    let longest = format!(
        r#"{{"type":"send","room":"r","text":"x","ref":"{}"}}"#,
        "r".repeat(MAX_REF_BYTES - 2)
    );
    assert!(parse(&longest).is_ok());
}

#[test]
fn text_limits_count_characters_not_bytes() {
    assert!(check_text(&"é".repeat(MAX_TEXT_CHARS), None).is_ok());
    assert_eq!(
        check_text(&"é".repeat(MAX_TEXT_CHARS + 1), None)
            .unwrap_err()
            .code,
        ErrorCode::TextTooLong
    );
    assert_eq!(
        check_text(" \n", None).unwrap_err().code,
        ErrorCode::EmptyText
    );
}

#[test]
fn a_text_of_invisible_characters_is_empty_and_one_visible_one_is_not() {
    for blank in [
        "\u{200B}\u{200B}",
        "\u{3164}",
        "\u{2800} \u{FEFF}",
        "\u{E0041}\u{E007F}",
    ] {
        assert_eq!(
            check_text(blank, None).unwrap_err().code,
            ErrorCode::EmptyText,
            "{blank:?}"
        );
    }
    for shown in ["a\u{200B}", "👍", "👨\u{200D}👩", "مرحبا", "\u{00A0}."] {
        assert!(check_text(shown, None).is_ok(), "{shown:?}");
    }
}

#[test]
fn a_frame_with_a_repeated_key_is_malformed() {
    let frame = r#"{"type":"send","room":"a","text":"hi","room":"b"}"#;
    assert_eq!(parse(frame).unwrap_err().code, ErrorCode::Malformed);
}

/// Frames built from every field clients send, with good, wrong, null,
/// repeated, escaped and unknown keys and values, in a fixed pseudo-random
/// mix: what the two readers of [`parse`] must agree on.
fn mixed_frames(count: usize) -> Vec<String> {
    const VALUES: &[(&str, &[&str])] = &[
        ("room", &[r#""general""#, "5", "null", r#""g\u00e9n""#]),
        ("text", &[r#""hi""#, r#""""#, "7", r#""a\"b""#]),
        (
            "ref",
            &[
                "7",
                r#""abc""#,
                "null",
                r#"{"a":1,"a":2}"#,
                r#"[1,{"b":[]}]"#,
                "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                "1e3",
                "-5",
                "0.5",
                "18446744073709551616",
                // 128 bytes as JSON (the most a ref may be), then 129.
                "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
            ],
        ),
        (
            "delivery",
            &[r#""fast""#, r#""reliable""#, r#""other""#, "null", r#"{"fast":null}"#],
        ),
        ("retry", &["true", "false", "1"]),
        ("confirm", &["true", r#""yes""#]),
        ("to", &[r#""bob""#, r#"["bob","carol"]"#, "[]", "5", "[5]"]),
        ("active", &["true", "null"]),
        ("before", &["5", "null", "-1", "5.0"]),
        ("limit", &["10", "null", "4294967296"]),
        ("seq", &["3", r#""3""#]),
        ("rooms", &[r#"{"a":1}"#, r#"{"a":1,"a":2}"#]),
        ("x", &["1", r#"{"y":[]}"#]),
        ("r\\u006fom", &[r#""general""#]),
        ("type", &[r#""send""#, r#""\u0073end""#, "null"]),
    ];
    let kinds = FRAME_KINDS
        .iter()
        .map(|kind| format!("\"{kind}\""))
        .chain(["\"nope\"".into(), "5".into()]);
    let kinds: Vec<String> = kinds.collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    (0..count)
        .map(|_| {
            let mut parts = Vec::new();
            if next(10) > 0 {
                parts.push(format!("\"type\":{}", kinds[next(kinds.len())]));
            }
            for (key, values) in VALUES {
                // Most frames carry few fields; some carry one twice.
                for _ in 0..[0, 0, 1, 1, 1, 2][next(6)] {
                    if next(3) == 0 {
                        parts.push(format!("\"{key}\":{}", values[next(values.len())]));
                    }
                }
            }
            let last = parts.len().max(1);
            parts.rotate_left(next(last) % last.max(1));
            let object = format!("{{{}}}", parts.join(","));
            // Now and then not one object: an array, trailing bytes, spaces.
            match next(40) {
                0 => format!("[{object}]"),
                1 => format!("{object}x"),
                2 => format!(" {object}\n"),
                _ => object,
            }
        })
        .collect()
}

#[test]
fn the_one_pass_reader_agrees_with_the_careful_one() {
    let frames = mixed_frames(50_000);
    let mut taken = 0;
    for text in &frames {
        let careful = client::parse_carefully(text);
        assert_eq!(parse(text), careful, "{text}");
        taken += usize::from(fields::read(text).is_some() && careful.is_ok());
    }
    // The mix exercises both readers, not just the careful one.
    assert!(taken > 500, "the one-pass reader took only {taken} frames");
}

#[test]
fn the_one_pass_reader_takes_what_clients_send_and_leaves_doubts() {
    let long = "x".repeat(1000);
    for text in [
        format!(r#"{{"type":"send","room":"general","text":"{long}","ref":7}}"#),
        format!(r#"{{"type":"send","room":"general","text":"{long}","ref":null}}"#),
        format!(r#"{{"type":"direct","to":"bob","text":"{long}","ref":"a","delivery":"fast"}}"#),
        r#"{"type":"group","to":["bob","carol"],"text":"hi","ref":1,"confirm":true}"#.into(),
        r#"{"type":"typing","room":"general","active":true}"#.into(),
        r#"{"type":"read","room":"general","seq":9}"#.into(),
        r#"{"type":"ping"}"#.into(),
    ] {
        assert!(fields::read(&text).is_some(), "{text}");
    }
    for doubt in [
        r#"{"type":"send","room":"a","room":"b","text":"x"}"#,
        r#"{"type":"send","room":"a","text":"x","ref":{"k":1,"k":2}}"#,
        r#"{"type":"send","room":"a","text":"x","extra":1}"#,
        r#"{"type":"send","r\u006fom":"a","text":"x"}"#,
        r#"{"type":"resume","rooms":{"a":1}}"#,
        r#"{"type":"direct","to":["bob"],"text":"x"}"#,
        r#"{"type":"send","room":"a","text":"x"}x"#,
    ] {
        assert!(fields::read(doubt).is_none(), "{doubt}");
    }
}
