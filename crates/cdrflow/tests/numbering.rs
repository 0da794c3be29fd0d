//! The country files' numbering plans against libphonenumber's metadata
//! (the `phonenumber` crate, a dev-dependency only: the pipeline reads the
//! tables). For each of the ten countries, random national numbers of
//! every length: each one libphonenumber calls a valid subscriber number
//! (mobile or fixed; not short codes, premium or shared-cost) must come out of
//! cdrflow as libphonenumber's E.164 in every spelling a switch writes,
//! and a length cdrflow refuses must hold no number libphonenumber calls
//! valid. Each dated rewrite of an old number must land on a number valid
//! today.

use std::path::Path;

use cdrflow_core::country::numbering::NumberError;
use cdrflow_core::country::Country;
use cdrflow_core::normalize::parse_timestamp;
use cdrflow_core::synth::SplitMix64;
use phonenumber::{Mode, Type};

const COUNTRIES: [&str; 10] = ["fr", "be", "ma", "tn", "pl", "eg", "ci", "sn", "cm", "mg"];

fn country(cc: &str) -> Country {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../config/countries/{cc}.toml"));
    Country::parse(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn libphonenumber(cc: &str, national: &str) -> Option<String> {
    let id: phonenumber::country::Id = cc.to_uppercase().parse().unwrap();
    let number = phonenumber::parse(Some(id), national).ok()?;
    let subscriber = matches!(
        number.number_type(&phonenumber::metadata::DATABASE),
        // The crate gives `Unknown` for a national number with a leading 0
        // (Côte d'Ivoire's 07…) though it validates it.
        Type::Mobile | Type::FixedLine | Type::FixedLineOrMobile | Type::Unknown
    );
    (subscriber && phonenumber::is_valid(&number))
        .then(|| number.format().mode(Mode::E164).to_string())
}

/// A national significant number: no leading 0 where 0 is the trunk
/// prefix (the number would be a different spelling, `00` international).
fn nsn(random: &mut SplitMix64, len: usize, trunk: &str) -> String {
    (0..len)
        .map(|i| {
            let lowest = if i == 0 && !trunk.is_empty() { 1 } else { 0 };
            char::from(b'0' + (lowest + random.below(10 - lowest)) as u8)
        })
        .collect()
}

/// How the country's own switches dial a national number (from the
/// regulators' plans, not from the country files under test).
fn trunk_prefix(cc: &str) -> &'static str {
    match cc {
        "fr" | "be" | "ma" | "eg" | "mg" => "0",
        _ => "",
    }
}

#[test]
fn todays_plans_agree_with_libphonenumber() {
    let now = parse_timestamp("2026-06-01T00:00:00Z").unwrap();
    let mut random = SplitMix64(15);
    for cc in COUNTRIES {
        let country = country(cc);
        let code = country.numbering.country_code();
        let trunk = trunk_prefix(cc);
        let mut valid = 0;
        for len in 6..=11 {
            for _ in 0..1_500 {
                let nsn = nsn(&mut random, len, trunk);
                let national = format!("{trunk}{nsn}");
                // cdrflow checks lengths, not ranges: it may take a number
                // libphonenumber would not.
                if let Some(expected) = libphonenumber(cc, &national) {
                    if !expected.starts_with(&format!("+{code}")) {
                        // `00…`: an international number, another country's.
                        let ours = country.numbering.normalize(&national, now).unwrap();
                        assert_eq!(
                            (ours.msisdn.to_string(), ours.international),
                            (expected, true)
                        );
                        continue;
                    }
                    valid += 1;
                    // What libphonenumber read (a sample may itself start
                    // with the country code).
                    let nsn = &expected[1 + code.to_string().len()..];
                    for spelling in [
                        national.clone(),
                        format!("+{code} {nsn}"),
                        format!("00{code}{nsn}"),
                        format!("+{code} ({trunk}){nsn}"),
                        format!("{trunk}{nsn}"),
                    ] {
                        let ours = country.numbering.normalize(&spelling, now);
                        assert_eq!(
                            ours.map(|n| n.msisdn.to_string()).as_deref(),
                            Ok(expected.as_str()),
                            "{cc}: `{spelling}`"
                        );
                    }
                }
            }
        }
        assert!(valid >= 50, "{cc}: only {valid} valid numbers sampled");
    }
}

#[test]
fn a_length_cdrflow_refuses_holds_no_valid_number() {
    let now = parse_timestamp("2026-06-01T00:00:00Z").unwrap();
    let mut random = SplitMix64(16);
    for cc in COUNTRIES {
        let country = country(cc);
        let trunk = trunk_prefix(cc);
        for len in 6..=11 {
            for _ in 0..1_000 {
                let national = format!("{trunk}{}", nsn(&mut random, len, trunk));
                if let Err(NumberError::InvalidLength(_)) =
                    country.numbering.normalize(&national, now)
                {
                    assert_eq!(
                        libphonenumber(cc, &national),
                        None,
                        "{cc}: `{national}` refused"
                    );
                }
            }
        }
    }
}

#[test]
fn old_numbers_are_rewritten_to_numbers_valid_today() {
    let cases = [
        (
            "ci",
            "07 12 34 56",
            "2020-12-31T12:00:00Z",
            "+2250707123456",
        ),
        (
            "ci",
            "45 12 34 56",
            "2020-12-31T12:00:00Z",
            "+2250545123456",
        ),
        (
            "ci",
            "02 12 34 56",
            "2020-12-31T12:00:00Z",
            "+2250102123456",
        ),
        ("cm", "77 12 34 56", "2014-06-01T00:00:00Z", "+237677123456"),
        ("cm", "99 12 34 56", "2014-06-01T00:00:00Z", "+237699123456"),
        (
            "eg",
            "012 345 6789",
            "2011-01-01T00:00:00Z",
            "+201223456789",
        ),
        (
            "eg",
            "010 345 6789",
            "2011-01-01T00:00:00Z",
            "+201003456789",
        ),
        (
            "ma",
            "061 23 45 67",
            "2008-01-01T00:00:00Z",
            "+212661234567",
        ),
        (
            "ma",
            "022 65 55 55",
            "2008-01-01T00:00:00Z",
            "+212522655555",
        ),
        ("mg", "22 123 45", "2024-01-01T00:00:00Z", "+261202212345"),
    ];
    for (cc, old, at, expected) in cases {
        let country = country(cc);
        let ours = country
            .numbering
            .normalize(old, parse_timestamp(at).unwrap())
            .unwrap();
        assert_eq!(ours.msisdn.to_string(), expected, "{cc}: `{old}` at {at}");
        let national =
            expected.trim_start_matches(&format!("+{}", country.numbering.country_code()));
        let trunk = trunk_prefix(cc);
        assert_eq!(
            libphonenumber(cc, &format!("{trunk}{national}")).as_deref(),
            Some(expected),
            "{cc}: `{old}` became {expected}, which libphonenumber does not know"
        );
    }
}
