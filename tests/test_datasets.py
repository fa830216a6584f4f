"""Tests for the datasets package: IDX reading, loaders, bundled data, generated tasks."""
import gzip
import importlib.util
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datasets
from datasets import idx as idx_module

HAS_MNIST1D = importlib.util.find_spec("mnist1d") is not None
HAS_DEBIAN_FASHION = all(
    (idx_module.DEBIAN_FASHION_MNIST_DIR / (name + ".gz")).is_file()
    for name in idx_module.MNIST_FILES.values())


# ----------------------------------------------------------------------------- IDX helpers

def idx_bytes(array, code=None):
    """IDX bytes written by hand (independently of datasets.write_idx)."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path, data, compress=False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_mnist_folder(folder, n_train=5, n_test=3, seed=0, compress=False):
    """Tiny MNIST-layout folder; returns the uint8 images and labels written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), compress)
        write_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), compress)
        written[prefix] = (images, labels)
    return written


# ----------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_file(tmp_path / "a.idx", idx_bytes(array), compress)
    got = datasets.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 1  # writable


def test_read_idx_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    path = write_file(tmp_path / "plain-name-ubyte", idx_bytes(array), compress=True)
    np.testing.assert_array_equal(datasets.read_idx(path), array)


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
def test_write_idx_round_trip(tmp_path, name, dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    path = datasets.write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(datasets.read_idx(path), array)


def test_write_idx_rejects_unknown_dtype(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        datasets.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    huge = np.broadcast_to(np.uint8(0), (2 ** 32,))         # a view: no memory behind it
    with pytest.raises(ValueError, match=r"write_idx: expected every dimension below 2\*\*32 .* got shape \(4294967296,\)"):
        datasets.write_idx(tmp_path / "x", huge)
    assert not (tmp_path / "x").exists()


GOOD = idx_bytes(np.arange(12, dtype=np.int16).reshape(3, 4))


@pytest.mark.parametrize("data, expected", [
    (b"\x01\x00" + GOOD[2:], "0x00 0x00"),            # bad magic, first byte
    (b"\x00\x08" + GOOD[2:], "0x00 0x00"),            # bad magic, second byte
    (GOOD[:2] + b"\x0a" + GOOD[3:], "type code"),     # unknown type
    (b"\x00\x00\x08\x00", "1 to 64 dimensions .* got 0"),         # no dimensions
    (b"\x00\x00\x08\x41" + b"\x00\x00\x00\x01" * 65 + b"\x07", "1 to 64 dimensions .* got 65"),
    (b"\x00\x00", "at least 4 header bytes"),          # too short for a header
    (GOOD[:6], "header bytes"),                        # header cut inside the dims
    (GOOD[:-1], "truncated"),                          # payload one byte short
    (GOOD + b"\x00", "trailing"),                      # one byte too many
])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_corrupt_files(tmp_path, data, expected, compress):
    path = write_file(tmp_path / "broken-file.idx", data, compress)
    with pytest.raises(ValueError, match=expected) as info:
        datasets.read_idx(path)
    assert "broken-file.idx" in str(info.value)


def test_read_idx_rejects_broken_gzip(tmp_path):
    stream = gzip.compress(GOOD)
    for i, data in enumerate([stream[:len(stream) // 2], stream[:10] + b"\xff" * 20]):
        path = write_file(tmp_path / f"broken-{i}.gz", data)
        with pytest.raises(ValueError, match="gzip") as info:
            datasets.read_idx(path)
        assert f"broken-{i}.gz" in str(info.value)


def test_read_idx_wants_a_path():
    with pytest.raises(TypeError, match="read_idx: expected path to be a str or os.PathLike, got int"):
        datasets.read_idx(3)


def test_read_idx_payload_size_uses_itemsize(tmp_path):
    data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + b"\x00" * 3 * 2  # int32 needs 12 bytes
    path = write_file(tmp_path / "short.idx", data)
    with pytest.raises(ValueError, match="12 bytes"):
        datasets.read_idx(path)


# ----------------------------------------------------------------------------- load_mnist

@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_tiny_folder(tmp_path, compress):
    written = write_mnist_folder(tmp_path, compress=compress)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(tmp_path)
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert y_train.shape == (5,) and y_test.shape == (3,)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_allclose(x_train[:, 0] * 255, written["train"][0], atol=1e-4)
    np.testing.assert_array_equal(y_test, written["t10k"][1])


def test_load_mnist_missing_file_is_named(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_count_mismatch_names_file(tmp_path):
    write_mnist_folder(tmp_path)
    labels = np.zeros(4, dtype=np.uint8)  # 5 training images
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    with pytest.raises(ValueError, match="5 images.*got 4 labels") as info:
        datasets.load_mnist(tmp_path)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_load_mnist_wrong_image_rank_names_file(tmp_path):
    write_mnist_folder(tmp_path)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 784), dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"\(N, H, W\)") as info:
        datasets.load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte" in str(info.value)


# ----------------------------------------------------------------------------- load_fashion_mnist

@pytest.fixture
def no_debian_fashion(tmp_path, monkeypatch):
    """Point the Debian folder somewhere empty, and unset the environment variable."""
    fake = tmp_path / "no-debian-here"
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST_DIR", fake)
    monkeypatch.delenv(idx_module.FASHION_MNIST_ENV, raising=False)
    return fake


def test_load_fashion_mnist_explicit_path(tmp_path, no_debian_fashion):
    written = write_mnist_folder(tmp_path / "fm", compress=True)
    (x_train, y_train), (x_test, _) = datasets.load_fashion_mnist(path=tmp_path / "fm")
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(y_train, written["train"][1])


def test_load_fashion_mnist_environment_variable(tmp_path, monkeypatch, no_debian_fashion):
    written = write_mnist_folder(tmp_path / "from-env", n_train=4, n_test=2)
    monkeypatch.setenv("HANDPROP_FASHION_MNIST", str(tmp_path / "from-env"))
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.shape == (4, 1, 28, 28) and x_test.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(y_test, written["t10k"][1])


def test_load_fashion_mnist_path_searched_before_environment(tmp_path, monkeypatch, no_debian_fashion):
    write_mnist_folder(tmp_path / "arg", n_train=6)
    write_mnist_folder(tmp_path / "env", n_train=2)
    monkeypatch.setenv("HANDPROP_FASHION_MNIST", str(tmp_path / "env"))
    (x_train, _), _ = datasets.load_fashion_mnist(tmp_path / "arg")
    assert len(x_train) == 6


def test_load_fashion_mnist_not_found_lists_places(tmp_path, monkeypatch, no_debian_fashion):
    partial = tmp_path / "partial"
    write_mnist_folder(partial)
    (partial / "train-images-idx3-ubyte").unlink()
    monkeypatch.setenv("HANDPROP_FASHION_MNIST", str(tmp_path / "env-folder"))
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_fashion_mnist(path=partial)
    message = str(info.value)
    for place in (str(partial), str(tmp_path / "env-folder"), str(no_debian_fashion)):
        assert place in message
    assert "train-images-idx3-ubyte" in message
    assert "HANDPROP_FASHION_MNIST" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "zalandoresearch/fashion-mnist" in message


@pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="Debian package dataset-fashion-mnist not installed")
def test_load_fashion_mnist_debian_package(monkeypatch):
    monkeypatch.delenv("HANDPROP_FASHION_MNIST", raising=False)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))


# ----------------------------------------------------------------------------- DataLoader

def collect(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 20), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_dataloader_each_sample_once(n, batch_size, shuffle, drop_last, seed):
    x = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n) * 10
    loader = datasets.DataLoader(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches = collect(loader)
    assert len(batches) == len(loader)
    seen = np.concatenate([yb for _, yb in batches]) // 10 if batches else np.array([], int)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0] // 2, yb // 10)  # pairs stay together
        assert len(xb) <= batch_size
    if drop_last:
        assert all(len(yb) == batch_size for _, yb in batches)
        assert len(seen) == n - n % batch_size
        assert len(np.unique(seen)) == len(seen)
    else:
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))


def test_dataloader_len_and_last_batch():
    x, y = np.zeros((10, 3)), np.zeros(10)
    assert len(datasets.DataLoader(x, y, 3)) == 4
    assert len(datasets.DataLoader(x, y, 3, drop_last=True)) == 3
    assert [len(yb) for _, yb in datasets.DataLoader(x, y, 3)] == [3, 3, 3, 1]
    assert len(datasets.DataLoader(x, y, 20, drop_last=True)) == 0


def test_dataloader_same_seed_same_epochs():
    x, y = np.arange(37), np.arange(37)
    a = datasets.DataLoader(x, y, 5, shuffle=True, seed=123)
    b = datasets.DataLoader(x, y, 5, shuffle=True, seed=123)
    for _ in range(3):
        for (xa, ya), (xb, yb) in zip(collect(a), collect(b), strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_dataloader_epochs_differ_and_seeds_differ():
    x, y = np.arange(100), np.arange(100)
    loader = datasets.DataLoader(x, y, 100, shuffle=True, seed=0)
    epoch1, epoch2 = collect(loader)[0][1], collect(loader)[0][1]
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, np.arange(100))
    other = collect(datasets.DataLoader(x, y, 100, shuffle=True, seed=1))[0][1]
    assert not np.array_equal(epoch1, other)


def test_dataloader_draws_each_epochs_order_when_iterated():
    """``iter(loader)`` starts an epoch: two iterators read in reverse order keep their epochs."""
    x, y = np.arange(50), np.arange(50)
    reference = datasets.DataLoader(x, y, 50, shuffle=True, seed=4)
    epochs = [collect(reference)[0][1], collect(reference)[0][1]]
    loader = datasets.DataLoader(x, y, 50, shuffle=True, seed=4)
    first, second = iter(loader), iter(loader)
    np.testing.assert_array_equal(next(second)[1], epochs[1])
    np.testing.assert_array_equal(next(first)[1], epochs[0])


def test_dataloader_batches_are_copies():
    x, y = np.zeros((4, 2)), np.zeros(4)
    for xb, yb in datasets.DataLoader(x, y, 2):
        xb += 1
        yb += 1
    assert not x.any() and not y.any()


def test_dataloader_keeps_dtypes_and_trailing_shapes():
    x = np.zeros((7, 1, 8, 8), dtype=np.float32)
    y = np.zeros((7, 5), dtype=np.int64)
    xb, yb = next(iter(datasets.DataLoader(x, y, 4)))
    assert xb.shape == (4, 1, 8, 8) and xb.dtype == np.float32
    assert yb.shape == (4, 5) and yb.dtype == np.int64


@pytest.mark.parametrize("kwargs, error, expected", [
    (dict(x=np.zeros(5), y=np.zeros(4), batch_size=2), ValueError, r"\(5,\).*\(4,\)"),
    (dict(x=[1, 2, 3], y=np.zeros(3), batch_size=2), TypeError, "x to be a numpy array, got list"),
    (dict(x=np.zeros(3), y=(1, 2, 3), batch_size=2), TypeError, "y to be a numpy array, got tuple"),
    (dict(x=np.float64(1.0), y=np.zeros(1), batch_size=1), TypeError, "numpy array"),
    (dict(x=np.array(1.0), y=np.zeros(1), batch_size=1), ValueError, "0-d"),
    (dict(x=np.zeros(3), y=np.zeros(3), batch_size=0), ValueError, "batch_size >= 1, got 0"),
    (dict(x=np.zeros(3), y=np.zeros(3), batch_size=2.0), TypeError, "batch_size to be an int, got float"),
    (dict(x=np.zeros(3), y=np.zeros(3), batch_size=True), TypeError, "batch_size"),
    (dict(x=np.zeros(3), y=np.zeros(3), batch_size=2, seed=1.5), TypeError,
     "DataLoader: expected seed to be a non-negative int, a np.random.SeedSequence, a np.random.Generator or None, got 1.5"),
    (dict(x=np.zeros(3), y=np.zeros(3), batch_size=2, seed=-1), ValueError, "DataLoader: expected seed >= 0, got -1"),
])
def test_dataloader_bad_input(kwargs, error, expected):
    with pytest.raises(error, match=expected):
        datasets.DataLoader(**kwargs)


# ----------------------------------------------------------------------------- load_digits

def test_load_digits_shapes_dtypes_range():
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    assert len(x_train) + len(x_test) == 1797
    assert x_train.shape[1:] == (1, 8, 8) and x_test.shape[1:] == (1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert y_train.shape == (len(x_train),) and y_test.shape == (len(x_test),)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(np.unique(x_train * 16), np.arange(17))  # pixels were 0..16
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert abs(len(x_test) / 1797 - 0.2) < 0.01


def test_load_digits_split_is_deterministic_disjoint_and_stratified():
    (xa, ya), (xa_t, ya_t) = datasets.load_digits(seed=0)
    (xb, yb), (xb_t, yb_t) = datasets.load_digits(seed=0)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya_t, yb_t)
    (xc, _), _ = datasets.load_digits(seed=1)
    assert not np.array_equal(xa[:50], xc[:50])
    # Disjoint and complete: each image once over the two parts (as a multiset of rows).
    everything = np.concatenate([xa, xa_t]).reshape(1797, 64)
    again = np.concatenate([xc, datasets.load_digits(seed=1)[1][0]]).reshape(1797, 64)
    np.testing.assert_array_equal(np.unique(everything, axis=0, return_counts=True)[1],
                                  np.unique(again, axis=0, return_counts=True)[1])
    counts = np.bincount(np.concatenate([ya, ya_t]), minlength=10)
    np.testing.assert_array_equal(np.bincount(ya_t, minlength=10), np.round(0.2 * counts))
    assert not np.array_equal(ya_t, np.sort(ya_t))  # classes interleaved


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_load_digits_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits(test_fraction=fraction)


@pytest.mark.parametrize("fraction, part", [(0.001, "test"), (0.999, "train")])
def test_load_digits_refuses_an_empty_part(fraction, part):
    with pytest.raises(ValueError, match=f"test_fraction={fraction} leaves the {part} part empty"):
        datasets.load_digits(test_fraction=fraction)


def test_load_mnist1d_shuffle_is_a_flag():
    with pytest.raises(TypeError, match="load_mnist1d: expected shuffle to be True or False, got 'no'"):
        datasets.load_mnist1d(shuffle="no")


# ----------------------------------------------------------------------------- MNIST-1D

def test_load_mnist1d_shapes_dtypes_classes():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist1d()
    assert x_train.shape == (4000, 40) and y_train.shape == (4000,)
    assert x_test.shape == (1000, 40) and y_test.shape == (1000,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_array_equal(np.unique(y_train), np.arange(10))
    np.testing.assert_array_equal(np.unique(y_test), np.arange(10))
    everything = np.concatenate([x_train, x_test])
    assert abs(everything.mean()) < 1e-3 and abs(everything.std() - 1) < 1e-3  # generator's normalisation


def test_load_mnist1d_shuffled_is_a_fixed_column_permutation():
    (x, y), (xt, yt) = datasets.load_mnist1d()
    (xs, ys), (xst, yst) = datasets.load_mnist1d(shuffle=True)
    np.testing.assert_array_equal(y, ys)
    np.testing.assert_array_equal(yt, yst)
    # Recover the permutation from one column each, then check it explains every column.
    perm = np.array([np.flatnonzero((x == xs[:, [j]]).all(0))[0] for j in range(40)])
    np.testing.assert_array_equal(np.sort(perm), np.arange(40))
    assert not np.array_equal(perm, np.arange(40))
    np.testing.assert_array_equal(xs, x[:, perm])
    np.testing.assert_array_equal(xst, xt[:, perm])  # the same permutation for the test part
    np.testing.assert_array_equal(datasets.load_mnist1d(shuffle=True)[0][0], xs)  # fixed


@pytest.mark.skipif(not HAS_MNIST1D, reason="mnist1d not installed")
def test_bundled_mnist1d_equals_fresh_generation():
    state = np.random.get_state()
    fresh = datasets.generate_mnist1d()
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG left as it was
    with np.load(datasets.mnist1d.MNIST1D_FILE, allow_pickle=False) as stored:
        assert set(stored.files) == set(fresh)
        for key in fresh:
            assert stored[key].dtype == fresh[key].dtype, key
            np.testing.assert_array_equal(stored[key], fresh[key], err_msg=key)


@pytest.mark.skipif(not HAS_MNIST1D, reason="mnist1d not installed")
def test_stored_permutation_is_the_package_shuffle_seq_draw():
    """With shuffle_seq=True the generator's next global draw after the sample shuffle is the
    column permutation: the draw generate_mnist1d records (checked on a small data set)."""
    from mnist1d.data import get_dataset_args, make_dataset
    state = np.random.get_state()
    try:
        args = get_dataset_args()
        args.num_samples = 200
        plain = make_dataset(args)
        perm = np.random.permutation(args.final_seq_length)
        args.shuffle_seq = True
        shuffled = make_dataset(args)
    finally:
        np.random.set_state(state)
    assert not np.array_equal(perm, np.arange(40))
    np.testing.assert_allclose(shuffled["x"], plain["x"][:, perm], rtol=0, atol=1e-12)
    np.testing.assert_allclose(shuffled["x_test"], plain["x_test"][:, perm], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(shuffled["y"], plain["y"])


def test_generate_mnist1d_without_package_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "mnist1d" or name.startswith("mnist1d."):
            raise ImportError("No module named 'mnist1d'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install mnist1d"):
        datasets.generate_mnist1d()


# ----------------------------------------------------------------------------- sequence tasks

def test_adding_problem_markers_and_targets():
    x, y = datasets.adding_problem(500, 31, seed=0)
    assert x.shape == (500, 31, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, :15].sum(1), 1)  # one in the first half
    np.testing.assert_array_equal(markers[:, 15:].sum(1), 1)  # one in the second half
    np.testing.assert_array_equal(y[:, 0], (values * markers).sum(1))
    # Markers fall everywhere in their halves over many samples.
    assert len(np.unique(markers[:, :15].argmax(1))) == 15
    assert len(np.unique(markers[:, 15:].argmax(1))) == 16


def test_adding_problem_baseline_and_seed():
    _, y = datasets.adding_problem(200_000, 2, seed=1)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.003
    a, b = datasets.adding_problem(5, 10, seed=7), datasets.adding_problem(5, 10, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], datasets.adding_problem(5, 10, seed=8)[0])


def test_copy_task_structure():
    n, T, k, L = 50, 7, 5, 4
    x, y = datasets.copy_task(n, T, n_symbols=k, seq_len=L, seed=0)
    assert x.shape == (n, T + 2 * L, k + 2) and x.dtype == np.float32
    assert y.shape == (n, T + 2 * L) and y.dtype == np.int64
    np.testing.assert_array_equal(x.sum(-1), 1)  # one-hot
    classes = x.argmax(-1)
    symbols = classes[:, :L]
    assert symbols.min() >= 1 and symbols.max() <= k
    assert len(np.unique(symbols)) == k
    np.testing.assert_array_equal(classes[:, L:L + T - 1], 0)       # T - 1 blanks
    np.testing.assert_array_equal(classes[:, L + T - 1], k + 1)     # the delimiter
    np.testing.assert_array_equal(classes[:, L + T:], 0)            # blanks while recalling
    np.testing.assert_array_equal(y[:, :T + L], 0)
    np.testing.assert_array_equal(y[:, T + L:], symbols)


def test_copy_task_memoryless_baseline_formula():
    T, k, L = 20, 8, 10
    _, y = datasets.copy_task(4000, T, n_symbols=k, seq_len=L, seed=0)
    # Memoryless: certain blank for the first T + L steps, uniform over symbols afterwards.
    p = np.zeros((T + 2 * L, k + 2))
    p[:T + L, 0] = 1.0
    p[T + L:, 1:k + 1] = 1.0 / k
    ce = -np.log(p[np.arange(T + 2 * L), y]).mean()
    assert np.isclose(ce, L * np.log(k) / (T + 2 * L))


@pytest.mark.parametrize("call, expected", [
    (lambda: datasets.adding_problem(0, 10), "n >= 1, got 0"),
    (lambda: datasets.adding_problem(5, 1), "T >= 2, got 1"),
    (lambda: datasets.copy_task(5, 0), "T >= 1, got 0"),
    (lambda: datasets.copy_task(5, 10, seq_len=0), "seq_len >= 1"),
    (lambda: datasets.noisy_sine(10, period=0), "period > 0"),
    (lambda: datasets.noisy_sine(10, noise=-1), "noise >= 0"),
    (lambda: datasets.mackey_glass(10, dt=0.3), "dt to divide"),
    (lambda: datasets.sliding_windows(np.zeros(5), 5), "longer than"),
    (lambda: datasets.sliding_windows(np.zeros((5, 2)), 2), r"\(L,\)"),
    (lambda: datasets.image_rows(np.zeros((2, 3, 4, 4))), r"\(N, 1, H, W\), got shape \(2, 3, 4, 4\)"),
    (lambda: datasets.image_rows(np.zeros((2, 4, 4))), r"\(N, 1, H, W\)"),
])
def test_sequence_bad_arguments(call, expected):
    with pytest.raises(ValueError, match=expected):
        call()


@pytest.mark.parametrize("call", [
    lambda: datasets.adding_problem(5.0, 10),
    lambda: datasets.copy_task(5, "10"),
    lambda: datasets.sliding_windows([1.0, 2.0, 3.0], 1),
    lambda: datasets.image_rows([[[[0.0]]]]),
])
def test_sequence_bad_types(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("name", ["adding_problem", "copy_task", "noisy_sine", "mackey_glass", "load_digits"])
@pytest.mark.parametrize("seed, error, expected", [
    ("a", TypeError, "expected seed to be a non-negative int, .*got 'a'"),
    (1.5, TypeError, "expected seed to be a non-negative int, .*got 1.5"),
    (-3, ValueError, "expected seed >= 0, got -3"),
])
def test_generators_name_a_bad_seed(name, seed, error, expected):
    args = {"adding_problem": (4, 5), "copy_task": (4, 5), "noisy_sine": (10,), "mackey_glass": (10,),
            "load_digits": ()}[name]
    with pytest.raises(error, match=f"^{name}: {expected}"):
        getattr(datasets, name)(*args, seed=seed)


def test_noisy_sine_and_mackey_glass_series():
    clean = datasets.noisy_sine(100, period=20, noise=0.0)
    assert clean.shape == (100,) and clean.dtype == np.float32
    np.testing.assert_allclose(clean, np.sin(2 * np.pi * np.arange(100) / 20), atol=1e-6)
    noisy = datasets.noisy_sine(5000, period=20, noise=0.5, seed=0)
    assert abs((noisy - np.sin(2 * np.pi * np.arange(5000) / 20)).std() - 0.5) < 0.03
    mg = datasets.mackey_glass(500, seed=0)
    assert mg.shape == (500,) and mg.dtype == np.float32
    assert 0.2 < mg.min() and mg.max() < 1.5 and mg.std() > 0.1  # chaotic, bounded
    np.testing.assert_array_equal(mg, datasets.mackey_glass(500, seed=0))
    assert not np.allclose(mg, datasets.mackey_glass(500, seed=1))


def test_mackey_glass_refuses_unstable_euler_steps():
    with pytest.raises(ValueError, match=r"^mackey_glass: expected gamma \* dt < 1 for stable Euler "
                                         r"steps, got gamma \* dt = 2.5 \(gamma=25.0, dt=0.1\)"):
        datasets.mackey_glass(5, gamma=25.0, washout=10)


@pytest.mark.parametrize("make, shape", [
    (lambda: datasets.mackey_glass(np.uint8(200), washout=np.uint8(100), seed=0), (200,)),
    (lambda: datasets.copy_task(2, 5, seq_len=np.uint8(200), n_symbols=np.uint8(255), seed=0)[0],
     (2, 405, 257)),
    (lambda: datasets.adding_problem(np.int8(3), np.int8(127), seed=0)[0], (3, 127, 2)),
    (lambda: datasets.noisy_sine(np.int16(3000), seed=0), (3000,)),
])
def test_generators_take_numpy_integers_as_the_ints_they_are(make, shape):
    """Sizes given as small NumPy integers must not wrap around in the generators' arithmetic."""
    with np.errstate(over="raise"):
        data = make()
    assert data.shape == shape and np.all(np.isfinite(data))


def test_mackey_glass_matches_euler_reference():
    """A direct Euler integration with dt=1 and no washout, written out step by step."""
    got = datasets.mackey_glass(30, tau=3, dt=1.0, washout=0, seed=5)
    history = list(1.2 + np.random.default_rng(5).uniform(-0.1, 0.1, size=4))
    for _ in range(29):
        lagged, now = history[-4], history[-1]
        history.append(now + 0.2 * lagged / (1 + lagged ** 10) - 0.1 * now)
    np.testing.assert_allclose(got, np.array(history[3:], dtype=np.float32), rtol=1e-6)


@pytest.mark.parametrize("window, horizon", [(1, 1), (3, 1), (4, 3)])
def test_sliding_windows_alignment(window, horizon):
    series = np.arange(10, dtype=np.float64)
    x, y = datasets.sliding_windows(series, window, horizon)
    m = 10 - window - horizon + 1
    assert x.shape == (m, window, 1) and y.shape == (m, 1)
    assert x.dtype == np.float64 and y.dtype == np.float64
    for i in range(m):
        np.testing.assert_array_equal(x[i, :, 0], series[i:i + window])
        assert y[i, 0] == series[i + window + horizon - 1]
    x[0, 0, 0] = -1.0
    y[0, 0] = -1.0
    np.testing.assert_array_equal(series, np.arange(10))  # copies, not views
    xi, _ = datasets.sliding_windows(np.arange(5), 2)
    assert xi.dtype == np.float32


def test_image_rows():
    (x, _), _ = datasets.load_digits()
    rows = datasets.image_rows(x)
    assert rows.shape == (len(x), 8, 8) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[3, 5], x[3, 0, 5])  # step 5 is row 5
