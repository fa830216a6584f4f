"""Checkpoints: npz, never unpickled, atomic, strict."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import layers
import nn


def model():
    return nn.Sequential(layers.Dense(3, 4), layers.ReLU(), layers.Dense(4, 2))


def test_round_trip(tmp_path):
    a, b = model(), model()
    path = tmp_path / "m.npz"
    nn.save(a, path)
    nn.load(b, path)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v, v2)
    assert [p for p in os.listdir(tmp_path)] == ["m.npz"]        # no temporary file left behind


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        nn.load(model(), tmp_path / "absent.npz")


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    nn.save(model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt|not a valid checkpoint"):
        nn.load(model(), path)


def test_corrupt_entries_are_a_clear_error(tmp_path):
    path, zipped = tmp_path / "m.npz", tmp_path / "z.npz"
    nn.save(model(), path)
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"PK\x01\x02") + 6] = 99           # a central directory entry's zip version
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="truncated or corrupt.*NotImplementedError"):
        nn.load(model(), path)
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("__handprop_checkpoint__.npy", b"not an array")
    with pytest.raises(ValueError, match="its entry '__handprop_checkpoint__' is not an .npy array"):
        nn.load(model(), zipped)


def test_an_entry_whose_header_claims_more_than_it_holds_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("__handprop_checkpoint__.npy", "w") as entry:
            np.lib.format.write_array(entry, np.array(1))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (10 ** 12, 3)})
        with z.open("0.weight.npy", "w") as entry:
            entry.write(header.getvalue() + bytes(48))        # 12 TB claimed, 48 bytes held
    with pytest.raises(ValueError, match=r"truncated or corrupt \(its entry '0.weight' claims shape "
                                         r"\(1000000000000, 3\) of float32, 12000000000000 bytes, and holds 48\)"):
        nn.load(model(), path)


def test_corrupt_compressed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    nn.seed(0)             # the error depends on the bytes zlib meets at the wrong offset
    np.savez_compressed(path, __handprop_checkpoint__=np.array(1),
                        **{k: v for k, v in model().state_dict().items()})
    raw = bytearray(path.read_bytes())
    raw[28] ^= 0xFF        # the first entry's extra-field length: zlib inflates from a wrong offset
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=r"truncated or corrupt \(error: Error -3 while decompressing"):
        nn.load(model(), path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a handprop checkpoint"):
        nn.load(model(), path)


def test_pickled_npz_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __handprop_checkpoint__=np.array(1), payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        nn.load(model(), path)


@pytest.mark.parametrize("content, words", [
    (pickle.dumps({"weight": 1}), "is not an .npz file, not a handprop checkpoint"),
    (b"hello world", "is not an .npz file, not a handprop checkpoint"),
    (b"", "is empty, not a handprop checkpoint"),
])
def test_foreign_file(tmp_path, content, words):
    # Never handed to np.load, whose fallback for unknown bytes is unpickling.
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=words):
        nn.load(model(), path)


def test_npy_file(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="is a single .npy array, not a handprop checkpoint"):
        nn.load(model(), path)


@pytest.mark.parametrize("version", [99, 0, -5])
def test_a_format_this_version_does_not_read_is_refused(tmp_path, version):
    path = tmp_path / "future.npz"
    np.savez(path, __handprop_checkpoint__=np.array(version), **model().state_dict())
    with pytest.raises(ValueError, match=f"has checkpoint format {version}; this handprop reads formats 1 to 1"):
        nn.load(model(), path)


@pytest.mark.parametrize("marker", [np.array([1, 1]), np.array(1.5), np.array("1")])
def test_malformed_format_number_refused(tmp_path, marker):
    path = tmp_path / "odd.npz"
    np.savez(path, __handprop_checkpoint__=marker, **model().state_dict())
    with pytest.raises(ValueError, match="not a valid checkpoint .*should be an integer format number"):
        nn.load(model(), path)


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"save: no folder .*absent.* to write"):
        nn.save(model(), tmp_path / "absent" / "m.npz")


def test_save_onto_a_folder_is_refused_before_writing(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; expected a file name"):
        nn.save(model(), tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["file", "allow_pickle", "args"])
def test_any_key_round_trips(tmp_path, name):
    """Keys that are also parameter names of ``np.savez`` are stored like any other."""
    a, b = nn.Module(), nn.Module()
    setattr(a, name, nn.Parameter(np.arange(3.0)))
    setattr(b, name, nn.Parameter(np.zeros(3)))
    nn.save(a, tmp_path / "m.npz")
    nn.load(b, tmp_path / "m.npz")
    np.testing.assert_array_equal(getattr(b, name).data, [0.0, 1.0, 2.0])


def test_a_state_that_would_need_pickling_is_refused_before_writing(tmp_path):
    class Odd(nn.Module):
        def state_dict(self):
            return {"meta": np.array({"a": 1}, dtype=object)}
    with pytest.raises(TypeError, match="entry 'meta' is a object array; a checkpoint holds numeric"):
        nn.save(Odd(), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_saved_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        nn.save(model(), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


def test_wrong_shapes_change_nothing(tmp_path):
    path = tmp_path / "wide.npz"
    nn.save(nn.Sequential(layers.Dense(3, 5), layers.ReLU(), layers.Dense(5, 2)), path)
    m = model()
    before = m.state_dict()
    with pytest.raises(ValueError, match=r"expected shape \(4, 3\), got \(5, 3\)"):
        nn.load(m, path)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nn.save(model(), path)
    original = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        nn.save(model(), path)
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["m.npz"]


def test_an_optimizers_state_round_trips_and_training_resumes_the_same(tmp_path):
    import optim
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)

    def steps(m, opt, n):
        for _ in range(n):
            m.zero_grad()
            loss_fn = nn.MSELoss()
            loss_fn(m(x), y)
            m.backward(loss_fn.backward())
            opt.step()

    a = model()
    opt_a = optim.Adam(a.parameters(), lr=0.01, amsgrad=True)
    steps(a, opt_a, 3)
    nn.save(a, tmp_path / "m.npz")
    nn.save(opt_a, tmp_path / "opt.npz")
    b = nn.load(model(), tmp_path / "m.npz")
    opt_b = nn.load(optim.Adam(b.parameters(), lr=0.5, amsgrad=True), tmp_path / "opt.npz")
    assert opt_b.lr == 0.01 and opt_b.state[0]["step"] == 3
    with pytest.raises(ValueError, match="load: strict=False is for modules; an optimizer's state loads "
                                         "whole, got strict=False for Adam"):
        nn.load(opt_b, tmp_path / "absent.npz", strict=False)      # refused before reading
    steps(a, opt_a, 2)
    steps(b, opt_b, 2)
    for u, v in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(u.data, v.data)


def test_what_is_not_a_module_or_optimizer_or_a_file_name_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"save: expected an nn.Module or an optimizer .* got dict"):
        nn.save({"w": np.zeros(2)}, tmp_path / "d.npz")
    with pytest.raises(TypeError, match=r"load: expected an nn.Module or an optimizer .* got list"):
        nn.load([], tmp_path / "d.npz")
    for name in ("", str(tmp_path) + os.sep):
        with pytest.raises(IsADirectoryError, match="is a folder; expected a file name"):
            nn.save(model(), name)
    with pytest.raises(TypeError, match="save: expected path to be a str or os.PathLike, got NoneType"):
        nn.save(model(), None)
    with pytest.raises(TypeError, match="load: expected path to be a str or os.PathLike, got int"):
        nn.load(model(), 3)
    assert os.listdir(tmp_path) == []


def test_a_symbolic_link_is_written_through(tmp_path):
    (tmp_path / "runs").mkdir()
    target, link = tmp_path / "runs" / "m.npz", tmp_path / "latest.npz"
    link.symlink_to(target)
    nn.save(model(), link)
    assert link.is_symlink() and target.is_file()
    nn.load(model(), link)


def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    nn.save(model(), "~/m.npz")
    assert os.listdir(tmp_path) == ["m.npz"]
    nn.load(model(), "~/m.npz")


def test_a_partial_load_warns_with_the_keys_and_errors_name_the_file(tmp_path):
    path = tmp_path / "dense.npz"
    nn.save(layers.Dense(3, 4), path)
    with pytest.warns(UserWarning, match=r"strict=False\) left 4 keys missing \['0.weight', '0.bias', "
                                         r"'2.weight', '2.bias'\] and 2 unexpected \['weight', 'bias'\]"):
        nn.load(model(), path, strict=False)
    with pytest.raises(ValueError, match=rf"^load: '{path}': .*missing"):
        nn.load(model(), path)
