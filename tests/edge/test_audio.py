from __future__ import annotations

import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edge.audio import find_audio_files, open_audio, write_wav
from edge.errors import AudioError, ExtraMissingError

sf = pytest.importorskip("soundfile")


def _signal(frames: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(channels)
    return (0.5 * rng.uniform(-1, 1, size=(frames, channels))).astype(np.float64)


@pytest.mark.parametrize(
    "subtype, tolerance",
    [
        ("PCM_U8", 1 / 128),
        ("PCM_16", 1 / 32768),
        ("PCM_24", 1 / 2**23),
        ("PCM_32", 1 / 2**31),
        ("FLOAT", 1e-7),
        ("DOUBLE", 1e-7),
    ],
)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_wav_encodings_read_like_libsndfile(tmp_path: Path, subtype: str, tolerance: float, channels: int) -> None:
    path = tmp_path / f"x_{subtype}.wav"
    data = _signal(1234, channels)
    sf.write(path, data, 22050, subtype=subtype)
    audio = open_audio(path)
    assert (audio.sample_rate_hz, audio.channels, audio.frames) == (22050, channels, 1234)
    reference = sf.read(path, dtype="float64", always_2d=True)[0].mean(axis=1)
    np.testing.assert_allclose(audio.read_all(), reference, atol=tolerance + 1e-7)


def test_extensible_wav_header(tmp_path: Path) -> None:
    path = tmp_path / "ext.wav"
    sf.write(path, _signal(500, 4), 48000, subtype="PCM_24")  # libsndfile writes WAVE_FORMAT_EXTENSIBLE for >2 ch
    assert open_audio(path).read_all().shape == (500,)


@pytest.mark.parametrize("fmt, subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_compressed_formats_through_soundfile(tmp_path: Path, fmt: str, subtype: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    t = np.arange(44100) / 44100
    sf.write(path, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3, 44100, format=fmt, subtype=subtype)
    audio = open_audio(path)
    assert audio.sample_rate_hz == 44100 and audio.channels == 2
    samples = audio.read_all()
    assert abs(samples.size - 44100) < 2000 and 0.15 < np.abs(samples).max() < 0.4


def test_non_wav_without_soundfile_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.flac"
    sf.write(path, np.zeros(100), 16000, format="FLAC")
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ExtraMissingError, match=r"scream-detector\[formats\]"):
        open_audio(path)


def test_a_text_file_named_wav_is_not_blamed_on_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all\n")
    monkeypatch.setitem(sys.modules, "soundfile", None)  # a base install
    with pytest.raises(AudioError, match="not a WAV file") as caught:
        open_audio(text)
    assert "formats" not in str(caught.value)
    mp3 = tmp_path / "song.mp3"
    mp3.write_bytes(b"ID3\x04" + bytes(200))  # real compressed audio still names the extra
    with pytest.raises(ExtraMissingError, match=r"scream-detector\[formats\]"):
        open_audio(mp3)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3", "MP3-damaged"])
def test_files_give_the_same_samples_however_they_are_read(
    fmt: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """detect reads 64 k blocks, listen 100 ms chunks: both must see the same samples. libsndfile's
    MP3 decoding of damaged frames depends on the read size, so compressed files are decoded in
    fixed blocks; the decoder's complaints are counted into one warning instead of printed."""
    from edge import synth

    rng = np.random.default_rng(0)
    rate = 22050
    audio = synth.room_tone(8.0, rate, rng, level=0.01)
    scream = synth.scream_like(2.0, rate, rng)
    audio[2 * rate : 2 * rate + scream.size] += scream
    path = tmp_path / f"scene.{fmt.split('-')[0].lower()}"
    sf.write(path, audio, rate, format=fmt.split("-")[0])
    if fmt == "MP3-damaged":  # bytes overwritten across the middle third, as a bad download leaves them
        data = bytearray(path.read_bytes())
        noise = np.random.default_rng(1)
        for i in range(len(data) // 3, 2 * len(data) // 3, 53):
            data[i] = int(noise.integers(0, 256))
        path.write_bytes(bytes(data))
    capfd.readouterr()
    reads = {size: np.concatenate(list(open_audio(path).blocks(size))) for size in (1600, 4410, 65536, 10**7)}
    for size, samples in reads.items():
        np.testing.assert_array_equal(samples, reads[1600], err_msg=f"{fmt} read in blocks of {size}")
    if fmt != "MP3-damaged":  # libsndfile stops at the damage: fewer samples, but the same every time
        assert abs(reads[1600].size - audio.size) < 3000
    err = capfd.readouterr().err
    assert "libmpg123" not in err and "Illegal Audio-MPEG-Header" not in err
    opened = open_audio(path)
    list(opened.blocks(1600))
    damaged = [w for w in opened.warnings if "damaged frame" in w]
    assert len(damaged) == (1 if fmt == "MP3-damaged" else 0), opened.warnings


def _wav_header(*, code: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, data_bytes: int = 0) -> bytes:
    block = channels * bits // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        code,
        channels,
        rate,
        rate * block,
        block,
        bits,
        b"data",
        data_bytes,
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (_wav_header(data_bytes=0), "no audio samples"),
        (b"RIFF\x10\x00\x00\x00WAV", "truncated or corrupt WAV header"),
        (_wav_header(data_bytes=100)[:30], "truncated WAV"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00", "truncated"),
        (b"this is not audio at all, just text pretending to be a wav file\n" * 10, "not a readable audio file"),
        (_wav_header(rate=5, data_bytes=4) + b"\x00" * 4, "sample rate 5 Hz"),
        (_wav_header(rate=10_000_000, data_bytes=4) + b"\x00" * 4, "sample rate 10000000 Hz"),
        (_wav_header(code=0x1234, data_bytes=4) + b"\x00" * 4, "not a readable audio file"),
        (_wav_header(channels=0, data_bytes=4) + b"\x00" * 4, "0 channels"),
        (_wav_header(data_bytes=4)[:32] + b"\x07\x00" + _wav_header(data_bytes=4)[34:] + b"\x00" * 4, "block align 7"),
    ],
    ids=[
        "empty",
        "zero-samples",
        "short-riff",
        "cut-in-fmt",
        "no-data-chunk",
        "text-named-wav",
        "absurd-low-rate",
        "absurd-high-rate",
        "unknown-codec",
        "zero-channels",
        "bad-block-align",
    ],
)
def test_bad_files_raise_clear_audio_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as info:
        open_audio(path).read_all()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        open_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a directory"):
        open_audio(tmp_path)


def test_truncated_data_is_analysed_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_wav(path, np.full(1000, 0.25, dtype=np.float32), 16000)
    path.write_bytes(path.read_bytes()[:-600])  # recording killed mid-write
    audio = open_audio(path)
    assert audio.frames == 700
    assert audio.warnings and "truncated" in audio.warnings[0]
    np.testing.assert_allclose(audio.read_all(), 0.25, atol=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused_with_their_time(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros(32000, dtype=np.float32)
    data[24000] = bad
    sf.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"non-finite sample .* at 1\.500 s"):
        open_audio(path).read_all()


def test_long_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    minutes = 5
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        block = (0.1 * np.random.default_rng(0).standard_normal(16000 * 10)).astype(np.float32)
        for _ in range(minutes * 6):
            out.write(block)
    file_mb = path.stat().st_size / 1e6
    tracemalloc.start()
    total = 0
    for chunk in open_audio(path).blocks(16000):
        total += chunk.size
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    assert total == 16000 * 60 * minutes
    assert peak_mb < 2.0 < file_mb  # a few blocks, never the file


def test_find_audio_files_is_recursive_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/b/z.wav", "a/y.flac", "x.WAV", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a/b/z.wav", "a/y.flac", "x.WAV"]
