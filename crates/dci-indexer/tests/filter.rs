//! The offers filter language (R-IX5): what parses into what, and where and
//! why bad filters are refused.

use dci_indexer::filter::{Bounds, Filter, FilterErrorKind, StateFilter};
use dci_model::{Amount, GeoPoint, Policy, PricePerHour, ServiceName, State};

fn ath(s: &str) -> PricePerHour {
    s.parse().unwrap()
}

#[test]
fn the_example_of_the_issue() {
    let f = Filter::parse("gpu=H100 vram>=80 rtt<30 price<=2.5 service=render near=38.7,-9.1").unwrap();
    let want = Filter {
        service: Some(ServiceName::new("render").unwrap()),
        gpu: Some("H100".into()),
        vram_gib: Bounds { min: Some(80), max: None },
        rtt_ms: Bounds { min: None, max: Some(29) },
        price: Bounds { min: None, max: Some(ath("2.5")) },
        near: Some(GeoPoint::new(38.7, -9.1).unwrap()),
        ..Filter::default()
    };
    assert_eq!(f, want);
}

#[test]
fn terms_become_typed_bounds() {
    type Check = fn(&Filter) -> bool;
    let rows: &[(&str, Check)] = &[
        ("", |f| *f == Filter::default()),
        ("   ", |f| *f == Filter::default()),
        ("count>=2", |f| f.gpu_count == Bounds { min: Some(2), max: None }),
        ("gpus=4", |f| f.gpu_count == Bounds { min: Some(4), max: Some(4) }),
        ("cpu>8 ram<=64gib", |f| f.cpu_cores.min == Some(9) && f.ram_gib.max == Some(64)),
        ("vram>=24 vram<48", |f| f.vram_gib == Bounds { min: Some(24), max: Some(47) }),
        ("vram>=24 vram>=40", |f| f.vram_gib.min == Some(40)),
        ("disk>=1000GB up>=100mbps down>=1000", |f| {
            f.disk_gib.min == Some(1000) && f.up_mbps.min == Some(100) && f.down_mbps.min == Some(1000)
        }),
        ("price<2.5", |f| f.price.max == Some(PricePerHour(Amount(ath("2.5").0.0 - 1)))),
        ("price>0.5ath/h", |f| f.price.min == Some(PricePerHour(Amount(ath("0.5").0.0 + 1)))),
        ("price=1", |f| f.price == Bounds { min: Some(ath("1")), max: Some(ath("1")) }),
        ("rep>=800 reputation<1000", |f| f.reputation == Bounds { min: Some(800), max: Some(999) }),
        ("state=healthy", |f| f.state == StateFilter::Is(State::Healthy)),
        ("state=reinspection-required", |f| f.state == StateFilter::Is(State::ReinspectionRequired)),
        ("state=any", |f| f.state == StateFilter::Any),
        ("rtt<=30ms near=0,0", |f| f.rtt_ms.max == Some(30)),
        (r#"gpu="RTX 4090""#, |f| f.gpu.as_deref() == Some("RTX 4090")),
        ("GPU=a100 Service=llm", |f| f.gpu.as_deref() == Some("a100") && f.service.is_some()),
    ];
    for (text, check) in rows {
        let f = Filter::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(check(&f), "{text:?} gave {f:?}");
        assert_eq!(text.parse::<Filter>().as_ref(), Ok(&f));
    }
}

#[test]
fn bad_filters_point_at_the_bad_term() {
    // (filter, term, column, message)
    let rows: &[(&str, usize, usize, &str)] = &[
        ("gpu=H100 vrm>=80", 2, 10, r#"at 2: unknown key "vrm"; expected one of gpu, count, vram"#),
        ("vram", 1, 1, r#"expected a term like vram>=80 (key, operator, value), found "vram""#),
        (">=80", 1, 1, "expected a term like vram>=80"),
        ("vram=>80", 1, 1, r#"vram: expected a whole number of GiB like 80, found ">80""#),
        ("vram>=eighty", 1, 1, "vram: expected a whole number of GiB"),
        ("gpu<H100", 1, 1, r#"gpu takes only =, found "<""#),
        ("gpu=", 1, 1, "gpu: expected a GPU model like H100"),
        ("service=Render", 1, 1, "service: expected a service name like render"),
        ("state=broken", 1, 1, "state: expected available, any, configuring"),
        ("near=91,0", 1, 1, "near: expected LAT,LON in degrees"),
        ("price<=cheap", 1, 1, "price: expected a price in ATH per hour like 2.5"),
        ("price<0", 1, 1, "a price above 0 after <"),
        ("cpu<0", 1, 1, "a number above 0 after <"),
        ("cpu>4294967295", 1, 1, "a smaller number after >"),
        ("gpu=a gpu=b", 2, 7, "gpu is given twice"),
        ("vram>=80 rtt<30", 2, 10, "rtt needs the consumer's location: add near=LAT,LON"),
        (r#"gpu="RTX 4090"#, 1, 1, r#"expected a closing ", found the end of the filter"#),
        ("  count>=1   x=1", 2, 14, r#"unknown key "x""#),
    ];
    for &(text, term, column, message) in rows {
        let e = Filter::parse(text).unwrap_err();
        assert_eq!((e.term, e.column), (term, column), "{text:?}: {e}");
        assert!(e.to_string().contains(message), "{text:?}: {e}");
    }
    let e = Filter::parse("gpu=H100 vrm>=80").unwrap_err();
    assert_eq!((e.text.as_str(), &e.kind), ("vrm>=80", &FilterErrorKind::UnknownKey("vrm".into())));
}

#[test]
fn filters_become_match_requests() {
    let f = Filter::parse("service=llm gpu=h100 count>=2 vram>=80 cpu>=16 rtt<=20 price<=3 near=38.7,-9.1").unwrap();
    let r = f.to_request(Policy::Cheapest).unwrap();
    assert_eq!(r.service.as_str(), "llm");
    assert_eq!(r.gpu_model.as_deref(), Some("h100"));
    assert_eq!((r.gpu_count, r.min_vram_gib, r.min_cpu_cores), (2, 80, 16));
    assert_eq!((r.max_latency_ms, r.max_price, r.policy), (Some(20), Some(ath("3")), Policy::Cheapest));
    for (text, why) in [
        ("gpu=h100", "needs service="),
        ("service=llm vram<=80", "only lower bounds on vram"),
        ("service=llm price>=1", "only upper bounds on rtt and price"),
        ("service=llm rep>=900", "cannot bound the reputation"),
        ("service=llm state=any", "available containers"),
    ] {
        let e = Filter::parse(text).unwrap().to_request(Policy::Balanced).unwrap_err();
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}
