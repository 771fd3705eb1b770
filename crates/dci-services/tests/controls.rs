//! The live stream's pure core: input messages, the camera state machine, the
//! frame header and the stream options.

use dci_services::render::controls::{DEG_PER_KEY, DEG_PER_PIXEL, MAX_DISTANCE, MAX_PITCH, MIN_DISTANCE, ZOOM_STEP};
use dci_services::render::stream::HEADER_LEN;
use dci_services::render::{
    Camera, Controls, FrameHeader, Input, InputMessage, Key, Scene, StreamParams, encode_jpeg, render,
};
use proptest::prelude::*;

#[test]
fn input_messages_parse_or_say_what_is_wrong() {
    let ok = |seq, input| Ok(InputMessage { seq, input });
    let malformed = |detail: &str| {
        Err(format!(
            "input: expected {{\"seq\": n, \"type\": \"orbit\"|\"zoom\"|\"key\"|\"reset\", ...}} with known keys, found an error: {detail}"
        ))
    };
    let cases: Vec<(&str, Result<InputMessage, String>)> = vec![
        (r#"{"seq":1,"type":"orbit","dx":12.5,"dy":-3}"#, ok(1, Input::Orbit { dx: 12.5, dy: -3.0 })),
        (r#"{"type":"zoom","delta":-1,"seq":7}"#, ok(7, Input::Zoom { delta: -1.0 })),
        (r#"{"seq":2,"type":"key","key":"ArrowLeft"}"#, ok(2, Input::Key { key: Key::ArrowLeft })),
        (r#"{"seq":3,"type":"key","key":"W"}"#, ok(3, Input::Key { key: Key::W })),
        (r#"{"seq":4,"type":"key","key":"d"}"#, ok(4, Input::Key { key: Key::D })),
        (r#"{"seq":5,"type":"reset","t":123.4}"#, ok(5, Input::Reset)),
        (r#"{"seq":0,"type":"reset"}"#, Err("seq: expected an integer from 1, found 0".into())),
        (
            r#"{"seq":1,"type":"orbit","dx":10001,"dy":0}"#,
            Err("dx: expected a finite number in -10000..=10000, found 10001".into()),
        ),
        (
            r#"{"seq":1,"type":"zoom","delta":-20000}"#,
            Err("delta: expected a finite number in -10000..=10000, found -20000".into()),
        ),
        (
            r#"{"seq":1,"type":"fly"}"#,
            malformed("unknown variant `fly`, expected one of `orbit`, `zoom`, `key`, `reset` at line 1 column 22"),
        ),
        (r#"{"seq":-1,"type":"reset"}"#, malformed("invalid value: integer `-1`, expected u64 at line 1 column 9")),
        (r#"{"type":"reset"}"#, malformed("missing field `seq` at line 1 column 16")),
        (r#"{"seq":1,"type":"orbit","dx":1}"#, malformed("missing field `dy` at line 1 column 31")),
        ("", malformed("EOF while parsing a value at line 1 column 0")),
    ];
    for (text, expect) in cases {
        assert_eq!(InputMessage::parse(text).map_err(|e| e.to_string()), expect, "{text}");
    }
}

#[test]
fn messages_survive_a_round_trip_through_json() {
    let inputs = [Input::Orbit { dx: 1.5, dy: -2.0 }, Input::Zoom { delta: 3.0 }, Input::Reset]
        .into_iter()
        .chain(Key::ALL.map(|key| Input::Key { key }));
    for (i, input) in inputs.enumerate() {
        let msg = InputMessage { seq: i as u64 + 1, input };
        assert_eq!(InputMessage::parse(&msg.to_json()), Ok(msg), "{}", msg.to_json());
    }
}

#[test]
fn each_input_moves_the_camera_as_documented() {
    let start = Camera { yaw_deg: 30.0, pitch_deg: 20.0, distance: 8.0, ..Camera::default() };
    let cam = |yaw_deg, pitch_deg, distance| Camera { yaw_deg, pitch_deg, distance, ..start };
    let key = |key| Input::Key { key };
    let cases = [
        (Input::Orbit { dx: 10.0, dy: -5.0 }, cam(30.0 + 10.0 * DEG_PER_PIXEL, 20.0 - 5.0 * DEG_PER_PIXEL, 8.0)),
        (Input::Orbit { dx: -200.0, dy: 0.0 }, cam(30.0 - 200.0 * DEG_PER_PIXEL + 360.0, 20.0, 8.0)),
        (Input::Orbit { dx: 0.0, dy: 1000.0 }, cam(30.0, MAX_PITCH, 8.0)),
        (Input::Zoom { delta: 2.0 }, cam(30.0, 20.0, 8.0 * ZOOM_STEP * ZOOM_STEP)),
        (Input::Zoom { delta: -100.0 }, cam(30.0, 20.0, MIN_DISTANCE)),
        (Input::Zoom { delta: 100.0 }, cam(30.0, 20.0, MAX_DISTANCE)),
        (key(Key::ArrowLeft), cam(30.0 - DEG_PER_KEY, 20.0, 8.0)),
        (key(Key::A), cam(30.0 - DEG_PER_KEY, 20.0, 8.0)),
        (key(Key::ArrowRight), cam(30.0 + DEG_PER_KEY, 20.0, 8.0)),
        (key(Key::D), cam(30.0 + DEG_PER_KEY, 20.0, 8.0)),
        (key(Key::ArrowUp), cam(30.0, 20.0 + DEG_PER_KEY, 8.0)),
        (key(Key::ArrowDown), cam(30.0, 20.0 - DEG_PER_KEY, 8.0)),
        (key(Key::W), cam(30.0, 20.0, 8.0 / ZOOM_STEP)),
        (key(Key::S), cam(30.0, 20.0, 8.0 * ZOOM_STEP)),
        (key(Key::R), start),
        (Input::Reset, start),
    ];
    for (input, expect) in cases {
        let mut controls = Controls::new(start);
        controls.handle(&InputMessage { seq: 1, input }).expect("valid");
        let got = controls.camera();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(got.yaw_deg, expect.yaw_deg)
                && close(got.pitch_deg, expect.pitch_deg)
                && close(got.distance, expect.distance)
                && (got.fov_deg, got.width, got.height) == (expect.fov_deg, expect.width, expect.height),
            "{input:?}: expected {expect:?}, found {got:?}"
        );
        assert_eq!(controls.applied(), 1);
    }
}

#[test]
fn reset_returns_to_the_initial_camera_after_anything() {
    let start = Camera { yaw_deg: 10.0, width: 96, height: 54, ..Camera::default() };
    let mut controls = Controls::new(start);
    for (input, seq) in
        [Input::Orbit { dx: 55.0, dy: 40.0 }, Input::Zoom { delta: 3.0 }, Input::Reset].into_iter().zip(1..)
    {
        controls.handle(&InputMessage { seq, input }).expect("valid");
    }
    assert_eq!(controls.camera(), start);
    assert_eq!(controls.applied(), 3);
}

#[test]
fn a_refused_input_changes_nothing() {
    let mut controls = Controls::new(Camera::default());
    let before = controls;
    let bad = InputMessage { seq: 9, input: Input::Orbit { dx: f64::NAN, dy: 0.0 } };
    assert_eq!(
        controls.handle(&bad).map_err(|e| e.to_string()),
        Err("dx: expected a finite number in -10000..=10000, found NaN".into())
    );
    assert_eq!(controls, before);
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (-10_000.0..10_000.0f64, -10_000.0..10_000.0f64).prop_map(|(dx, dy)| Input::Orbit { dx, dy }),
        (-10_000.0..10_000.0f64).prop_map(|delta| Input::Zoom { delta }),
        proptest::sample::select(Key::ALL.to_vec()).prop_map(|key| Input::Key { key }),
        Just(Input::Reset),
    ]
}

proptest! {
    #[test]
    fn any_inputs_keep_the_camera_renderable(inputs in proptest::collection::vec((input(), 1..1000u64), 0..40)) {
        let mut controls = Controls::new(Camera { width: 16, height: 16, ..Camera::default() });
        let mut highest = 0;
        for (input, seq) in inputs {
            controls.handle(&InputMessage { seq, input }).expect("valid input");
            highest = highest.max(seq);
            let c = controls.camera();
            prop_assert_eq!(c.validate(), Ok(()));
            prop_assert!((0.0..=360.0).contains(&c.yaw_deg));
            prop_assert!((MIN_DISTANCE..=MAX_DISTANCE).contains(&c.distance));
            prop_assert_eq!((c.width, c.height), (16, 16));
        }
        prop_assert_eq!(controls.applied(), highest);
    }

    #[test]
    fn frame_headers_round_trip(
        frame: u64, input_seq: u64, render_us: u32, encode_us: u32, width: u16, height: u16,
        jpeg in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = FrameHeader { frame, input_seq, render_us, encode_us, width, height };
        let mut message = header.encode().to_vec();
        message.extend_from_slice(&jpeg);
        prop_assert_eq!(FrameHeader::decode(&message), Ok((header, jpeg.as_slice())));
    }
}

#[test]
fn frame_header_layout_and_errors() {
    let header = FrameHeader { frame: 2, input_seq: 3, render_us: 4, encode_us: 5, width: 320, height: 180 };
    let bytes = header.encode();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(&bytes[..4], b"DCIF");
    assert_eq!(bytes[4..12], 2u64.to_le_bytes());
    assert_eq!(bytes[12..20], 3u64.to_le_bytes());
    assert_eq!(bytes[28..32], [64, 1, 180, 0]);
    let err = |b: &[u8]| FrameHeader::decode(b).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(err(&bytes[..31]), Err("frame: expected at least 32 bytes, found 31".into()));
    let mut wrong = bytes;
    wrong[0] = b'X';
    assert_eq!(err(&wrong), Err("frame: expected magic DCIF, found [88, 67, 73, 70]".into()));
}

#[test]
fn stream_options_from_the_query() {
    let d = StreamParams::default();
    let check = |query: &[(&str, &str)], expect: Result<StreamParams, &str>| {
        let got = StreamParams::from_query(query.iter().copied()).map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{query:?}");
    };
    assert_eq!((d.camera.width, d.camera.height, d.fps, d.quality), (320, 180, 30, 75));
    check(&[], Ok(d));
    check(&[("fps", "60"), ("quality", "1")], Ok(StreamParams { fps: 60, quality: 1, ..d }));
    check(&[("width", "640")], Ok(StreamParams { camera: Camera { width: 640, ..d.camera }, ..d }));
    check(
        &[("height", "480"), ("yaw", "90"), ("fps", "5")],
        Ok(StreamParams { camera: Camera { height: 480, yaw_deg: 90.0, ..d.camera }, fps: 5, ..d }),
    );
    check(&[("fps", "61")], Err("fps: expected an integer in 1..=60, found 61"));
    check(&[("fps", "ten")], Err("fps: expected an integer in 1..=60, found \"ten\""));
    check(&[("quality", "0")], Err("quality: expected an integer in 1..=100, found 0"));
    check(&[("quality", "1"), ("quality", "2")], Err("quality: expected at most one value, found several"));
    check(&[("pitch", "95")], Err("pitch: expected a number in -89..=89, found 95"));
    check(
        &[("speed", "1")],
        Err(
            "query: expected a parameter among fps, quality, yaw, pitch, distance, fov, width, height, found \"speed\"",
        ),
    );
}

#[test]
fn jpeg_frames_are_deterministic_and_close_to_the_render() -> anyhow::Result<()> {
    let scene = Scene::demo();
    let cam = Camera { width: 96, height: 54, ..Camera::default() };
    let image = render(&scene, &cam)?;
    let jpeg = encode_jpeg(&image, 90)?;
    assert_eq!(jpeg, encode_jpeg(&image, 90)?);
    assert!(encode_jpeg(&image, 30)?.len() < jpeg.len(), "lower quality is smaller");
    let mut decoder = jpeg_decoder::Decoder::new(jpeg.as_slice());
    let rgb = decoder.decode()?;
    assert_eq!(rgb.len(), image.rgb.len());
    let mean_error =
        rgb.iter().zip(&image.rgb).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum::<u64>() as f64 / rgb.len() as f64;
    assert!(mean_error < 6.0, "mean error {mean_error} per channel");
    Ok(())
}
