from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.audio import write_wav
from tests.helpers import make_synthetic_dataset
from train.data import DataError, load_dataset
from train.splits import split_by_group


def _manifest(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    return make_synthetic_dataset(tmp_path / "data", per_class=8)


def test_folder_dataset_summary(small_set: Path) -> None:
    dataset = load_dataset(small_set)
    assert len(dataset.by_label("scream")) == 8 and len(dataset.by_label("non_scream")) == 8
    text = "\n".join(dataset.summary_lines())
    assert "scream" in text and "16000 Hz x16" in text and "min" in text


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a manifest nor a folder"):
        load_dataset(tmp_path)


def test_missing_class_is_refused(small_set: Path) -> None:
    for f in (small_set / "non_scream").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no usable 'non_scream' clips"):
        load_dataset(small_set)


def test_too_small_is_refused(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", per_class=3)
    with pytest.raises(DataError, match="at least 6 clips in 3 groups"):
        load_dataset(root)


def test_manifest_missing_columns(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", "file,label", ["a.wav,scream"])
    with pytest.raises(DataError, match="lacks the column\\(s\\) path"):
        load_dataset(manifest)


def test_manifest_skips_are_listed_not_fatal(small_set: Path, tmp_path: Path) -> None:
    rows = [
        f"{p.relative_to(small_set)}\t{p.parent.name}\tg{i % 5}" for i, p in enumerate(sorted(small_set.rglob("*.wav")))
    ]
    (small_set / "broken.wav").write_bytes(b"RIFF....garbage")
    rows += [
        f"{sorted(small_set.rglob('s*.wav'))[0].relative_to(small_set)}\tscream\tg0",  # duplicate
        "scream/s000.wav\tyelling\tg1",  # unknown label (and a duplicate path, but the label is checked first)
        "broken.wav\tnon_scream\tg9",
        "gone.wav\tscream\tg8",
    ]
    manifest = _manifest(small_set / "manifest.tsv", "path\tlabel\tgroup", rows)
    dataset = load_dataset(manifest)
    skipped = dataset.skipped
    assert len(dataset.clips) == 16 and len(skipped) == 4
    assert any("duplicate path" in r for _, r in skipped)
    assert any("unknown label 'yelling'" in r for _, r in skipped)
    assert any(p.endswith("broken.wav") and "corrupt" in r for p, r in skipped)
    assert any(p.endswith("gone.wav") and "no such file" in r for p, r in skipped)
    assert "skipped" in "\n".join(dataset.summary_lines())


def test_group_split_never_leaks_and_keeps_both_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "g"
    rows = []
    (root / "a").mkdir(parents=True)
    for i in range(120):
        label = "scream" if i % 4 == 0 else "non_scream"
        path = root / "a" / f"{i}.wav"
        write_wav(path, rng.uniform(-0.1, 0.1, 1600).astype(np.float32), 16000)
        rows.append(f"a/{i}.wav\t{label}\tgroup{rng.integers(0, 30)}_{label}")
    dataset = load_dataset(_manifest(root / "manifest.tsv", "path\tlabel\tgroup", rows))
    for seed in range(5):
        splits = split_by_group(dataset.clips, seed=seed)
        groups = {name: {c.group for c in members} for name, members in splits.items()}
        assert not groups["train"] & groups["test"]
        assert not groups["train"] & groups["validation"]
        assert not groups["validation"] & groups["test"]
        assert sum(len(m) for m in splits.values()) == len(dataset.clips)
        for members in splits.values():
            assert {c.label for c in members} == {"scream", "non_scream"}
        assert 0.5 < len(splits["train"]) / len(dataset.clips) < 0.85


def _sources(counts: dict[str, tuple[int, int]]) -> list:  # type: ignore[type-arg]
    """Clips of sources, already regrouped by source: name -> (screams, non-screams)."""
    from train.data import Clip

    return [
        Clip(path=Path(f"/d/{name}/{label}{i}.wav"), label=label, group=f"source:{name}", source=name)
        for name, (screams, others) in counts.items()
        for label, n in (("scream", screams), ("non_scream", others))
        for i in range(n)
    ]


def test_source_folds_keep_each_source_on_one_side_and_balance_screams() -> None:
    from train.splits import fold_splits, source_folds

    counts = {"a": (70, 80), "b": (64, 160), "c": (39, 90), "d": (24, 180), "e": (14, 370), "f": (13, 150)}
    counts |= {"g": (12, 30), "h": (9, 125), "i": (5, 340), "j": (0, 530), "k": (0, 330), "l": (0, 120)}
    clips = _sources(counts)
    parts = source_folds(clips, 4, seed=3)
    assert sorted(len(p) for p in parts) and sum(len(p) for p in parts) == len(clips)
    homes = [{c.source for c in p} for p in parts]
    assert all(not (homes[i] & homes[j]) for i in range(4) for j in range(i + 1, 4))  # a source on one side
    screams = sorted(sum(c.is_scream for c in p) for p in parts)
    # Largest first to the lightest part: 70 | 64 | 39+12+5 | 24+14+13+9 (the two big sources alone).
    assert screams == [56, 60, 64, 70]
    # Then the sources without screams, largest first, each to the part with the fewest non-screams.
    from_scream_sources = [sum(not c.is_scream for c in p if counts[c.source][0]) for p in parts]
    assert from_scream_sources[next(k for k, h in enumerate(homes) if "j" in h)] == min(from_scream_sources)
    assert source_folds(clips, 4, seed=3) == parts  # seeded
    for fold in range(4):
        split = fold_splits(clips, 4, fold, seed=3, balance_screams=True)
        sides = [{c.source for c in split[s]} for s in ("train", "validation", "test")]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
        assert split["test"] == parts[fold] and split["validation"] == parts[(fold + 1) % 4]


def test_source_folds_need_a_scream_source_per_fold() -> None:
    from train.splits import source_folds

    with pytest.raises(DataError, match="2 sources hold screams; 3 folds"):
        source_folds(_sources({"a": (5, 5), "b": (5, 5), "c": (0, 9)}), 3)


def test_a_recording_several_sources_ship_goes_with_one_source_when_splitting_by_source() -> None:
    """The corpus builder groups one recording shipped by two packages; splitting by source must
    not then put that recording in a train fold and a test fold (found on corpus-v2: a fillets-ng
    recording also in warmux and in scream-corpus-v1). The shared recording goes with the source
    holding most of its copies, and the sources stay apart: welding them into one unit left one
    corpus-v2 fold 26 training screams."""
    from train.data import Clip, Dataset, regroup, source_units
    from train.splits import source_folds

    def clip(i: int, label: str, group: str, source: str) -> Clip:
        return Clip(path=Path(f"/d/{source}/{i}.wav"), label=label, group=group, source=source)

    clips = [clip(i, "scream", f"{s}-g{i}", s) for s in "abcdef" for i in range(4)]
    clips += [clip(10 + i, "non_scream", f"{s}-n{i}", s) for s in "abcdefgh" for i in range(4)]
    clips += [clip(20, "non_scream", "shared", "a"), clip(21, "non_scream", "shared", "g")]
    clips += [clip(24, "non_scream", "shared", "g")]
    clips += [clip(22, "non_scream", "shared2", "g"), clip(23, "scream", "shared2", "d")]
    units = source_units(clips)
    assert units["shared"] == "g"  # two of its three copies
    assert units["shared2"] == "d"  # a tie: the first source by name
    assert units["a-g0"] == "a" and units["h-n3"] == "h"
    regrouped = regroup(Dataset(root=Path("/d"), clips=clips), "source")
    assert {c.group for c in regrouped.clips} == {f"source:{s}" for s in "abcdefgh"}
    parts = source_folds(regrouped.clips, 3, seed=0)
    assert sorted(sum(c.is_scream for c in part) for part in parts) == [8, 8, 9]  # balanced
    originals = {c.path: c.group for c in clips}
    shared = ("shared", "shared2")
    for group in shared:
        homes = {k for k, part in enumerate(parts) for c in part if originals[c.path] == group}
        assert len(homes) == 1, group
    tested = [{originals[c.path] for c in part} for part in parts]
    assert all(not (tested[i] & tested[j]) for i in range(3) for j in range(i + 1, 3))  # no recording on two sides
    for source in "abcdefgh":  # every source's own recordings on one side
        own = {k for k, p in enumerate(parts) for c in p if c.source == source and originals[c.path] not in shared}
        assert len(own) == 1, source


def test_the_teacher_audit_leaves_out_training_screams_only(tmp_path: Path) -> None:
    """--min-teacher-scream: the manifest's teacher_scream column is read (blank or junk: not
    audited); screams below the bound leave train and validation, never the test split."""
    from train.pipeline import audited_splits

    rng = np.random.default_rng(0)
    # clip i: a scream when i is odd; its teacher score (blank: not audited, "x": unreadable).
    teacher = ["0.01", "0.02", "0.9", "", "0.01", "0.6", "", "x", "0.01", "0.03", "", "0.01"]
    rows = []
    for i, score in enumerate(teacher):
        label = "scream" if i % 2 else "non_scream"
        write_wav(tmp_path / f"c{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        rows.append(f"c{i}.wav\t{label}\tg{i}\t{score}")
    dataset = load_dataset(_manifest(tmp_path / "manifest.tsv", "path\tlabel\tgroup\tteacher_scream", rows))
    clips = {int(c.path.stem[1:]): c for c in dataset.clips}
    assert [clips[i].teacher_scream for i in (0, 5, 3, 7)] == [0.01, 0.6, None, None]
    splits = {
        "train": [clips[i] for i in range(6)],
        "validation": [clips[i] for i in range(6, 9)],
        "test": [clips[i] for i in range(9, 12)],
    }
    out, dropped = audited_splits(splits, 0.05)
    assert [c.path.name for c in out["train"]] == ["c0.wav", "c2.wav", "c3.wav", "c4.wav", "c5.wav"]
    assert [c.path.name for c in out["validation"]] == ["c6.wav", "c7.wav", "c8.wav"]  # c7 was never audited
    assert out["test"] == splits["test"] and clips[9].teacher_scream == 0.03  # a low scream stays in test
    assert dropped == 1


def test_the_teacher_mines_hard_negatives_only_when_asked() -> None:
    """--teacher-hard-negatives: a non-scream the teacher hears as screaming is drawn at twice the
    hard-negative weight, whatever its family; off, or unaudited, the family decides as before."""
    from edge.features import FeatureParams
    from train.augment import AugmentParams
    from train.data import Clip
    from train.pipeline import AugmentedBatches, PreparedSplit, TrainConfig, negative_weight

    def clip(category: str, teacher: float | None) -> Clip:
        return Clip(path=Path(f"/d/{category}{teacher}.wav"), label="non_scream", group="g", category=category,
                    teacher_scream=teacher)  # fmt: skip

    music, loud_music, cry, unaudited = (
        clip("music", 0.001),
        clip("music", 0.3),
        clip("baby_cry", 0.3),
        clip("sfx", None),
    )
    off, on = TrainConfig(), TrainConfig(teacher_hard_negative=0.2)
    assert [negative_weight(c, off) for c in (music, loud_music, cry, unaudited)] == [1.0, 1.0, 3.0, 1.0]
    assert [negative_weight(c, on) for c in (music, loud_music, cry, unaudited)] == [1.0, 6.0, 6.0, 1.0]
    # The batches draw by these weights.
    scream = Clip(path=Path("/d/s.wav"), label="scream", group="s")
    waves = [np.zeros(16000, np.float32)] * 5
    split = PreparedSplit([scream, music, loud_music, cry, unaudited], waves)
    batches = AugmentedBatches(split, FeatureParams(), on, AugmentParams())
    np.testing.assert_allclose(batches.negative_p, np.array([1, 6, 6, 1]) / 14)


def test_two_runs_decoding_one_clip_into_a_shared_cache_never_move_each_others_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two crossvals beside each other share the decoded-audio cache. The first writer is held after
    writing its temporary file while the second writes and moves its own: with one fixed temporary
    name the first then found its file gone (FileNotFoundError, a crashed run)."""
    import threading

    from train.data import WaveformCache

    wav = tmp_path / "clip.wav"
    write_wav(wav, (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    cache = WaveformCache(tmp_path / "cache", 16000)
    real_save = np.save
    first_written, second_done = threading.Event(), threading.Event()
    writers: list[str] = []

    def held_save(file, array, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_save(file, array, *args, **kwargs)
        writers.append(threading.current_thread().name)
        if len(writers) == 1:
            first_written.set()
            assert second_done.wait(30)

    monkeypatch.setattr(np, "save", held_save)
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["first"] = cache.load(wav)
        except Exception as exc:  # reported below, not lost in the thread
            outcome["first"] = exc

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert first_written.wait(30)
    second = cache.load(wav)  # the first has not moved its file yet: this one decodes and writes too
    second_done.set()
    thread.join(30)
    assert writers == ["first", "MainThread"]
    assert isinstance(outcome["first"], np.ndarray), outcome["first"]
    np.testing.assert_array_equal(outcome["first"], second)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache._key(wav).name]  # no temporary left
    np.testing.assert_array_equal(np.load(cache._key(wav)), second)
