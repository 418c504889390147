//! The protocol's unit tests: every client frame parses, every refusal
//! says why.

use super::*;
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
