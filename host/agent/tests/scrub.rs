//! Credential patterns (true and false positives), streaming, and large inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use oxydra_agent::scrub::{REDACTED, Scrubber};

const CONFIGURED: &str = "my-configured-secret-value";

fn scrubber() -> Scrubber {
    Scrubber::new(Some(Path::new("/home/alice/ws")), vec![CONFIGURED.into()])
}

fn scrub(s: &str) -> String {
    scrubber().scrub(s)
}

fn check(cases: &[(&str, &str)]) {
    for (input, want) in cases {
        assert_eq!(scrub(input), *want, "input: {input}");
    }
}

fn kept(cases: &[&str]) {
    for keep in cases {
        assert_eq!(scrub(keep), *keep, "should be kept: {keep}");
    }
}

#[test]
fn aws_access_key_ids_anywhere() {
    check(&[
        (
            "rotated AKIAIOSFODNN7EXAMPLE yesterday",
            "rotated [REDACTED] yesterday",
        ),
        (
            "{\"AccessKeyId\": \"ASIAY34FZKBOKMUTVV7A\", \"Expiration\": \"2026-01-01\"}",
            "{\"AccessKeyId\": \"[REDACTED]\", \"Expiration\": \"2026-01-01\"}",
        ),
        (
            "AWS_ACCESS_KEY_ID=AKIAI44QH8DHBEXAMPLE",
            "AWS_ACCESS_KEY_ID=[REDACTED]",
        ),
        (
            "{\"content\": \"[default]\\nAKIAIOSFODNN7EXAMPLE\\n\"}",
            "{\"content\": \"[default]\\n[REDACTED]\\n\"}",
        ),
        ("(AKIAIOSFODNN7EXAMPLE).", "([REDACTED])."),
    ]);
    for prefix in [
        "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
    ] {
        let id = format!("{prefix}IOSFODNN7EXAMPLE");
        assert_eq!(scrub(&format!("id {id} ok")), "id [REDACTED] ok", "{id}");
    }
}

#[test]
fn aws_words_and_near_misses_are_kept() {
    kept(&[
        "AKIA is a prefix; ASIA keys are temporary",
        "Travel in ASIA and AKIA-style naming",
        "AKIAIOSFODNN7EXAMPL is 19 chars",
        "AKIAIOSFODNN7EXAMPLEXY is 22 chars",
        "ASIAN markets",
        "akiaiosfodnn7example lowercase",
    ]);
}

#[test]
fn aws_secret_access_keys_when_labelled() {
    check(&[
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED]",
        ),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nAWS_REGION=us-east-1",
            "AWS_SECRET_ACCESS_KEY=[REDACTED]\nAWS_REGION=us-east-1",
        ),
        (
            "{\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}",
            "{\"SecretAccessKey\": \"[REDACTED]\"}",
        ),
        (
            "aws_session_token = IQoJb3JpZ2luX2VjEXAMPLE",
            "aws_session_token = [REDACTED]",
        ),
    ]);
}

#[test]
fn gcp_service_account_json() {
    let input = r#"{
  "type": "service_account",
  "project_id": "my-project",
  "private_key_id": "3f2c9a1b7e4d5c6b8a9f0e1d2c3b4a5f6e7d8c9b",
  "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n",
  "client_email": "bot@my-project.iam.gserviceaccount.com",
  "client_id": "113456789012345678901"
}"#;
    let want = r#"{
  "type": "service_account",
  "project_id": "my-project",
  "private_key_id": "[REDACTED]",
  "private_key": "[REDACTED]",
  "client_email": "bot@my-project.iam.gserviceaccount.com",
  "client_id": "113456789012345678901"
}"#;
    assert_eq!(scrub(input), want);
    // compact, on one line
    let compact = r#"{"private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n","x":1}"#;
    assert_eq!(scrub(compact), r#"{"private_key":"[REDACTED]","x":1}"#);
}

const PEM_BODY: &str = "MIIEpAIBAAKCAQEA7bq5tXzR9kP2mQw8vLxN4cY3hJ6fT1uE0oS5gDzW2aVbK8iM\n\
                        xQ7rN3pL6yH9tC2vB5nJ8kF1dG4sA0wZ7eR3qU6iO9mP2lK5jH8gF1dS4aZ7xC0v\n";

#[test]
fn pem_private_key_blocks_in_any_form() {
    for label in [
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "DSA PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ] {
        let input =
            format!("key file:\n-----BEGIN {label}-----\n{PEM_BODY}-----END {label}-----\ndone\n");
        assert_eq!(scrub(&input), "key file:\n[REDACTED]\ndone\n", "{label}");
    }
    // Windows line endings, and text on the same line around the block
    let crlf = format!(
        "a -----BEGIN RSA PRIVATE KEY-----\r\n{}-----END RSA PRIVATE KEY----- b",
        PEM_BODY.replace('\n', "\r\n")
    );
    assert_eq!(scrub(&crlf), "a [REDACTED] b");
    // two blocks, something in between stays
    let two = format!(
        "-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}-----END EC PRIVATE KEY-----\nbetween\n\
         -----BEGIN PRIVATE KEY-----\n{PEM_BODY}-----END PRIVATE KEY-----"
    );
    assert_eq!(scrub(&two), "[REDACTED]\nbetween\n[REDACTED]");
}

#[test]
fn unterminated_private_key_redacts_to_the_end() {
    let input = format!("head\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}b3Blbn (truncated)");
    assert_eq!(scrub(&input), "head\n[REDACTED]");
    let bad_end = format!("-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIV");
    assert_eq!(scrub(&bad_end), REDACTED);
}

#[test]
fn public_pem_blocks_stay() {
    kept(&[
        "-----BEGIN PUBLIC KEY-----\n\
         MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n\
         4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n\
         -----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\n\
         MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n\
         RTESMBAGA1UEChMJQmFsdGltb3JlMRMwEQYDVQQLEwpDeWJlclRydXN0MSIwIAYD\n\
         -----END CERTIFICATE-----",
        "-----BEGIN RSA PUBLIC KEY-----\nMEgCQQCo9+BpMRYQ/dL3DS2CyJxRF+j6ctbT3/Qp84+KeFhnii7NT7fELilKUSnx\n-----END RSA PUBLIC KEY-----",
        "ssh-keygen prints -----BEGIN and -----END markers",
    ]);
    // a private key after a certificate is still redacted
    let chain = format!(
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n-----END CERTIFICATE-----\n\
         -----BEGIN PRIVATE KEY-----\n{PEM_BODY}-----END PRIVATE KEY-----\n"
    );
    assert_eq!(
        scrub(&chain),
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n-----END CERTIFICATE-----\n[REDACTED]\n"
    );
}

#[test]
fn slack_tokens_and_webhooks() {
    check(&[
        (
            "bot uses xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx now",
            "bot uses [REDACTED] now",
        ),
        (
            "SLACK_USER=xoxp-2345678901-2345678901-2345678901-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d",
            "SLACK_USER=[REDACTED]",
        ),
        (
            "{\"app\": \"xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef\"}",
            "{\"app\": \"[REDACTED]\"}",
        ),
        ("legacy xoxs-1234567890-abc", "legacy [REDACTED]"),
        ("old xoxa-2-1234567890", "old [REDACTED]"),
        ("refresh xoxr-1234567890-xyz", "refresh [REDACTED]"),
        (
            "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX today",
            "post to https://hooks.slack.com/services/[REDACTED] today",
        ),
        (
            "WEBHOOK=\"https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abc\"",
            "WEBHOOK=\"https://hooks.slack.com/services/[REDACTED]\"",
        ),
    ]);
    kept(&[
        "xoxb-style tokens are for bots",
        "xapp-level tokens are for socket mode",
        "see https://hooks.slack.com/services/ for docs",
    ]);
}

#[test]
fn stripe_secret_keys_but_not_publishable_keys() {
    check(&[
        (
            "Stripe::api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'",
            "Stripe::api_key = '[REDACTED]'",
        ),
        (
            "curl -u sk_test_4eC39HqLyjWDarjtT1zdp7dc: https://api.stripe.com",
            "curl -u [REDACTED]: https://api.stripe.com",
        ),
        (
            "restricted rk_live_51H8xYzAbCdEfGh0123 key",
            "restricted [REDACTED] key",
        ),
        ("rk_test_51H8xYzAbCdEfGh0123", "[REDACTED]"),
        (
            "endpoint whsec_5f2b8c1d9e3a7f4b6c0d2e8a1b3c5d7f",
            "endpoint [REDACTED]",
        ),
        // the .env the CLI's end-to-end test reads
        (
            "STRIPE_SECRET_KEY=sk_live_51Hx8aQ2eZvKYlo2C9xT7wLmN3pR5sU8vW\nLOCAL=sk-local-5f3e9a7c1b2d4e6f8a0b\nHOME_DIR=ok\n",
            "STRIPE_SECRET_KEY=[REDACTED]\nLOCAL=[REDACTED]\nHOME_DIR=ok\n",
        ),
        ("sk_live_51Hx8aQ2eZvKYlo2C9xT7wLmN3pR5sU8vW", "[REDACTED]"),
    ]);
    kept(&[
        "publishable pk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefGhIjKl",
        "{\"publishableKey\": \"pk_test_TYooMQauvdEDq54NiTphI7jx\"}",
        "sk_test_helpers and sk_live_connection_pool are module names",
    ]);
}

#[test]
fn jwts_but_not_dotted_names() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    check(&[
        (
            &format!("cookie session={jwt}; Path=/"),
            "cookie session=[REDACTED]; Path=/",
        ),
        (&format!("the token {jwt}."), "the token [REDACTED]."),
        (
            &format!("{{\"id_token\":\"{jwt}\"}}"),
            "{\"id_token\":\"[REDACTED]\"}",
        ),
        (&format!("got {jwt}\n"), "got [REDACTED]\n"),
        // `alg: none`: empty signature
        (
            "unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. end",
            "unsigned [REDACTED] end",
        ),
        // short, so below the entropy rule's 24 chars
        ("x eyJhbGciOiJub25lIn0.e30.abc y", "x [REDACTED] y"),
    ]);
    kept(&[
        "a.b.c",
        "config.yaml.bak",
        "com.example.service.Main",
        "v1.2.3 and 10.0.0.1",
        "eyJ alone, and eyJhbGciOiJub25lIn0 without dots",
        "www.example.com/index.html",
    ]);
}

#[test]
fn github_openai_anthropic_google_keys() {
    check(&[
        (
            "push with ghp_16C7e42F292c6912E7710c838347Ae178B4a ok",
            "push with [REDACTED] ok",
        ),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED]"),
        ("ghu_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED]"),
        (
            "\"ghs_16C7e42F292c6912E7710c838347Ae178B4a\"",
            "\"[REDACTED]\"",
        ),
        ("ghr_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED]"),
        (
            "github_pat_11ABCDEFG0abcdefghij_klmnopqrstuvwxyz0123456789",
            "[REDACTED]",
        ),
        (
            "use sk-proj-Ab3dEf9hIjK2mNoPq5rStUvWx7yZ0aBcD now",
            "use [REDACTED] now",
        ),
        ("sk-Ab3dEf9hIjK2mNoPq5rStUvWx7yZ0aBcD", "[REDACTED]"),
        (
            "key: sk-ant-api03-xY7pQ2rT9vK4mN8bL1cF6gH3jS5dA0wE-AA",
            "key: [REDACTED]",
        ),
        (
            "maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe here",
            "maps [REDACTED] here",
        ),
    ]);
    kept(&[
        "pip install sk-learn; the sk-ant- prefix is Anthropic's",
        "task-list and risk-free-rate-model-2024",
        "ghp_ tokens are classic personal access tokens",
        "AIza is the Google key prefix",
    ]);
}

#[test]
fn readable_things_are_kept() {
    kept(&[
        "sha256:430079a3f1fcd1714d51d138c1662537c4f44a982abe8e3cedd3bf43fb998807",
        "0b9e2c6e-8f1d-4c3a-9b7e-2d4f6a8c0e1b",
        "/shared/projects/oxydra/src/very_long_file_name_here.rs",
        "aGVsbG8gd29ybGQ= is base64 of hello world",
        "SGVsbG8sIFdvcmxkIQ==",
        "Please remember: tokens and passwords are never logged.",
        "version 1.2.3-rc.4+build.5",
        "[REDACTED] already",
    ]);
}

#[test]
fn redacted_values_are_not_doubled() {
    check(&[
        (&format!("api_key={CONFIGURED}"), "api_key=[REDACTED]"),
        ("token: [REDACTED]", "token: [REDACTED]"),
        (
            "Authorization: Bearer [REDACTED]",
            "Authorization: Bearer [REDACTED]",
        ),
    ]);
}

#[test]
fn five_megabytes_scrub() {
    let line = "2026-01-01 INFO fetched /home/alice/ws/shared/data.csv rows=123 \
                key=AKIAIOSFODNN7EXAMPLE sha=430079a3f1fcd1714d51d138c1662537c4f44a98 ok\n";
    let big = line.repeat(5 * 1024 * 1024 / line.len() + 1);
    let out = scrub(&big);
    assert!(!out.contains("AKIA"));
    assert!(!out.contains("/home/alice"));
    assert_eq!(
        out.matches("/shared/data.csv").count(),
        big.matches(line).count()
    );

    // Inputs that a rescanning matcher would make quadratic: these must finish promptly.
    let n = 5 * 1024 * 1024;
    for unit in [
        "token",
        "tokentoken=",
        "sk-a",
        "eyJ",
        "eyJaaaaaaaaaaaa.",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN ",
        "AKIA",
        "password is ",
        "a",
        "xoxb-1",
    ] {
        let big = unit.repeat(n / unit.len());
        let _ = scrub(&big);
    }
}

// ---------- streaming ----------

/// Feeds `text` in `chunk`-byte pieces (on char boundaries); returns the concatenation.
fn stream_in_chunks(s: &Scrubber, text: &str, chunk: usize) -> String {
    let mut st = s.stream();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let mut j = (i + chunk).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        out.push_str(&st.push(&text[i..j]));
        i = j;
    }
    out.push_str(&st.finish());
    out
}

fn stream_split_at(s: &Scrubber, text: &str, at: usize) -> String {
    let mut st = s.stream();
    let mut out = st.push(&text[..at]);
    out.push_str(&st.push(&text[at..]));
    out.push_str(&st.finish());
    out
}

const STREAM_TEXTS: &[&str] = &[
    "Here is the value my-configured-secret-value you asked for.",
    "my-configured-secret-value",
    "the password: hunter2hunter2 and the secret is swordfish-42 ok",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done",
    "keys AKIAIOSFODNN7EXAMPLE and ghp_16C7e42F292c6912E7710c838347Ae178B4a end",
    "wrote /home/alice/ws/shared/report.md for you",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq5tXzR9kP2mQw8vLxN4cY3hJ6fT1uE0oS5gDzW2aVbK8iM\nxQ7rN3pL6yH9tC2vB5nJ8kF1dG4sA0wZ7eR3qU6iO9mP2lK5jH8gF1dS4aZ7xC0v\n-----END RSA PRIVATE KEY-----\nafter",
    "{\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n\"}",
    "hook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX ok",
];

/// Substrings that must never reach the output, whatever the chunking.
const NEVER: &[&str] = &[
    "my-configured",
    "secret-value",
    "hunter2",
    "swordfish",
    "eyJhbGci",
    "dozjgNry",
    "AKIAIOSF",
    "ghp_16C7",
    "MIIE",
    "xQ7rN3pL",
    "XXXXXXXX",
    "/home/alice",
];

fn assert_clean(out: &str, what: &str) {
    for bad in NEVER {
        assert!(!out.contains(bad), "{bad:?} leaked ({what}): {out:?}");
    }
}

#[test]
fn secrets_split_across_deltas_never_leak() {
    let s = scrubber();
    for text in STREAM_TEXTS {
        for chunk in [1, 2, 3, 5, 7, 13, 64] {
            let out = stream_in_chunks(&s, text, chunk);
            assert_clean(&out, &format!("chunk {chunk} of {text:?}"));
        }
        for at in 0..=text.len() {
            if text.is_char_boundary(at) {
                let out = stream_split_at(&s, text, at);
                assert_clean(&out, &format!("split at {at} of {text:?}"));
            }
        }
    }
}

#[test]
fn streamed_output_matches_whole_text_scrub() {
    let s = scrubber();
    for text in STREAM_TEXTS {
        let want = s.scrub(text);
        for chunk in [1, 4, 9, 1000] {
            assert_eq!(
                stream_in_chunks(&s, text, chunk),
                want,
                "chunk {chunk}: {text:?}"
            );
        }
    }
}

#[test]
fn a_secret_without_a_host_root_still_holds_back() {
    // no paths: the hold comes from the configured secret alone
    let s = Scrubber::new(None, vec!["abcdefgh ijkl".into()]);
    let text = "x abcdefgh ijkl y";
    for at in 0..=text.len() {
        assert_eq!(
            stream_split_at(&s, text, at),
            "x [REDACTED] y",
            "split at {at}"
        );
    }
}

#[test]
fn ordinary_text_is_emitted_promptly() {
    let s = scrubber();
    // the longest literal is the host path `/home/alice/ws/shared` or the secret (26 bytes)
    let hold = CONFIGURED.len().max("/home/alice/ws/shared".len()) - 1;
    let mut st = s.stream();
    let words = "The quick brown fox jumps over the lazy dog while the model explains things. ";
    let mut sent = String::new();
    let mut emitted = String::new();
    for _ in 0..50 {
        for w in words.split_inclusive(' ') {
            sent.push_str(w);
            emitted.push_str(&st.push(w));
            // held back: at most the hold plus the unfinished word
            assert!(st.held() <= hold + "explains ".len(), "held {}", st.held());
            assert_eq!(sent.len() - emitted.len(), st.held());
        }
    }
    emitted.push_str(&st.finish());
    assert_eq!(emitted, sent);

    // with nothing configured, each word goes out as soon as the space after it arrives
    let plain = Scrubber::new(None, vec![]);
    let mut st = plain.stream();
    assert_eq!(st.push("hello "), "hello ");
    assert_eq!(st.push("wor"), "");
    assert_eq!(st.push("ld\n"), "world\n");
    assert_eq!(st.held(), 0);
    assert_eq!(st.finish(), "");
}

#[test]
fn a_long_line_without_spaces_is_not_held_forever() {
    let plain = Scrubber::new(None, vec![]);
    let mut st = plain.stream();
    let mut emitted = 0;
    let unit = "{\"a\":1,\"b\":[2,3]},";
    let mut sent = 0;
    for _ in 0..2000 {
        emitted += st.push(unit).len();
        sent += unit.len();
        assert!(sent - emitted <= oxydra_agent::scrub::STREAM_MAX_RUN + unit.len());
    }
    let _ = st.finish();
}

#[test]
fn streamed_private_key_is_held_then_redacted() {
    let s = Scrubber::new(None, vec![]);
    let mut st = s.stream();
    let mut out = st.push("key:\n-----BEGIN PRIVATE KEY-----\n");
    for line in PEM_BODY.lines() {
        out.push_str(&st.push(line));
        out.push_str(&st.push("\n"));
    }
    assert!(!out.contains("MII"), "{out:?}");
    out.push_str(&st.push("-----END PRIVATE KEY-----\nthanks "));
    out.push_str(&st.finish());
    assert_eq!(out, "key:\n[REDACTED]\nthanks ");
}

#[test]
fn long_stream_with_unicode_keeps_context_for_late_values() {
    let s = scrubber();
    let prose = "Voilà — the café's naïve résumé, 日本語のテキスト, and more words. ";
    let text = format!(
        "{}the password: hunter2hunter2 then {} key AKIAIOSFODNN7EXAMPLE and {CONFIGURED} end",
        prose.repeat(40),
        prose.repeat(30)
    );
    let want = s.scrub(&text);
    for chunk in [1, 3, 10, 97] {
        let out = stream_in_chunks(&s, &text, chunk);
        assert_clean(&out, &format!("chunk {chunk}"));
        assert_eq!(out, want, "chunk {chunk}");
    }
    assert!(want.contains("the password: [REDACTED] then"));
    assert!(want.ends_with("key [REDACTED] and [REDACTED] end"));
}

#[test]
fn a_delegated_session_id_stays_readable() {
    // `sub-<agent>:<hex>`: the colon ends the token, so neither half looks like a secret.
    let s = Scrubber::new(None, vec![]);
    let text = "[reader used 3 model call(s); session sub-reader:9f2c41d07a3b5e68]";
    assert_eq!(s.scrub(text), text);
}
