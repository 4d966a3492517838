"""onespike.save / onespike.load: bit-identical round trips and a FormatError for every defect."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from tests.helpers import dag_nets
from torch import nn

import onespike
from onespike import FormatError
from onespike.network.io import FORMAT_VERSION, _digest


def _signed_pool_model() -> nn.Module:
    """conv - ReLU - BN (one negative scale) - maxpool - conv - ReLU - flatten - linear:
    the BN folds forward across the pool, giving a signed max-pool route."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -0.5, 2.0, 0.7]))
        bn.bias.copy_(torch.tensor([0.1, 0.0, -0.1, 0.2]))
        bn.running_mean.uniform_(0, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), bn, nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(24, 5),
    ).eval()


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 3)).eval()


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def snn(data: torch.Tensor) -> onespike.SpikingNetwork:
    return onespike.convert(_signed_pool_model(), data, progress=False)


@pytest.fixture()
def saved(snn: onespike.SpikingNetwork, tmp_path: Path) -> Path:
    return onespike.save(snn, tmp_path / "net.onespike")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of ``t`` (NaN == NaN when the bits are equal)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def _assert_identical(a: onespike.SpikingNetwork, b: onespike.SpikingNetwork,
                      x: torch.Tensor) -> None:
    assert torch.equal(a(x), b(x))
    for engine in ("event", "closed"):
        ra, rb = a.simulate(x, engine), b.simulate(x, engine)
        assert torch.equal(ra.output, rb.output)
        assert len(ra.spike_times) == len(rb.spike_times)
        for ta, tb in zip(ra.spike_times, rb.spike_times):
            assert torch.equal(ta, tb)
        assert ra.certificate.as_dict() == rb.certificate.as_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(_bits(sa[k]), _bits(sb[k])), k
    assert a.summary() == b.summary()


def test_round_trip_bit_identical(snn, saved, data) -> None:
    assert any(k.endswith("_sign") for k in snn.state_dict()), "signed pool route expected"
    loaded = onespike.load(saved)
    assert isinstance(loaded, onespike.SpikingNetwork)
    _assert_identical(snn, loaded, data)
    assert loaded.latency == snn.latency
    assert [ly.t_max for ly in loaded.layers] == [ly.t_max for ly in snn.layers]


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_round_trip_neurons_and_dtypes(neuron, dtype, data, tmp_path) -> None:
    net = onespike.convert(_mlp(), data, neuron=neuron, dtype=dtype, zeta=0.25,
                           input_range=(-0.5, 1.5), progress=False)
    loaded = onespike.load(onespike.save(net, tmp_path / "m.onespike"), device="cpu")
    assert loaded.neuron == neuron and loaded.dtype == dtype and loaded.zeta == 0.25
    _assert_identical(net, loaded, data)


def test_file_is_plain_safetensors_with_json(saved, snn) -> None:
    with safe_open(str(saved), framework="pt") as f:
        meta = f.metadata()
        names = set(f.keys())
    doc = json.loads(meta["onespike"])
    assert doc["format"] == "onespike" and doc["format_version"] == FORMAT_VERSION
    assert doc["neuron"] == snn.neuron and doc["dtype"] == "float64"
    assert doc["input_shape"] == list(snn.input_shape)
    assert [ly["name"] for ly in doc["layers"]] == [ly.name for ly in snn.layers]
    assert names == set(snn.state_dict()) == set(doc["tensors"])
    assert len(meta["onespike_sha256"]) == 64


# -- defects --------------------------------------------------------------------------------
def _rewrite(src: Path, dst: Path, *, tensors=None, doc=None, fix_digest=True) -> Path:
    """Re-save ``src`` with changed tensors / JSON document (digest recomputed if asked)."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src)) if tensors is None else tensors
    if doc is not None:
        meta["onespike"] = json.dumps(doc)
    if fix_digest:
        meta["onespike_sha256"] = _digest(meta["onespike"], tensors)
    dst.write_bytes(st_save(tensors, metadata=meta))
    return dst


def _doc(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["onespike"])


def _fails(path: Path, *words: str) -> str:
    with pytest.raises(FormatError) as info:
        onespike.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("keep", [0, 3, 8, 20, "half-header", "mid-data", "last-byte"])
def test_truncated(saved, tmp_path, keep) -> None:
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    cut = {"half-header": 8 + n // 2, "mid-data": 8 + n + (len(raw) - 8 - n) // 2,
           "last-byte": len(raw) - 1}.get(keep, keep)
    bad = tmp_path / "cut.onespike"
    bad.write_bytes(raw[:cut])
    msg = _fails(bad)
    assert "truncated" in msg or "not a onespike file" in msg


def test_header_byte_flips_are_detected(saved, tmp_path) -> None:
    """About 700 single-bit flips spread over the whole header (every byte would take 20 s)."""
    raw = bytearray(saved.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    bad = tmp_path / "flip.onespike"
    for pos in [*range(8, 8 + min(n, 200)), *range(8, 8 + n, max(1, n // 500))]:
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        bad.write_bytes(bytes(flipped))
        with pytest.raises(FormatError):
            onespike.load(bad)


def test_header_length_flip(saved, tmp_path) -> None:
    raw = bytearray(saved.read_bytes())
    for pos in range(8):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x40
        bad = tmp_path / f"len{pos}.onespike"
        bad.write_bytes(bytes(flipped))
        _fails(bad)


def test_data_flip_is_checksum_mismatch(saved, tmp_path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[-5] ^= 0x10
    bad = tmp_path / "data.onespike"
    bad.write_bytes(bytes(raw))
    _fails(bad, "checksum mismatch")


def test_json_value_edit_is_checksum_mismatch(saved, tmp_path) -> None:
    doc = _doc(saved)
    doc["layers"][0]["t_max"] += 1e-9
    _fails(_rewrite(saved, tmp_path / "edit.onespike", doc=doc, fix_digest=False),
           "checksum mismatch")


@pytest.mark.parametrize("version,words", [
    (FORMAT_VERSION + 1, ("newer", "upgrade onespike")),
    (99, ("newer",)),
    (0, ("unknown format_version",)),
    ("1", ("unknown format_version",)),
    (None, ("unknown format_version",)),
])
def test_format_version(saved, tmp_path, version, words) -> None:
    doc = _doc(saved)
    doc["format_version"] = version
    _fails(_rewrite(saved, tmp_path / "v.onespike", doc=doc), *words)
    # the version is checked before the checksum
    _fails(_rewrite(saved, tmp_path / "v2.onespike", doc=doc, fix_digest=False), *words)


def test_missing_tensor(saved, tmp_path) -> None:
    tensors = load_file(str(saved))
    del tensors["layers.1.theta"]
    _fails(_rewrite(saved, tmp_path / "del.onespike", tensors=tensors), "missing",
           "layers.1.theta")


def test_extra_tensor(saved, tmp_path) -> None:
    tensors = load_file(str(saved))
    tensors["intruder"] = torch.zeros(3)
    _fails(_rewrite(saved, tmp_path / "extra.onespike", tensors=tensors), "unexpected",
           "intruder")


def test_wrong_shape_and_dtype(saved, tmp_path) -> None:
    tensors = load_file(str(saved))
    tensors["layers.0.edge0_weight"] = tensors["layers.0.edge0_weight"][:2].contiguous()
    _fails(_rewrite(saved, tmp_path / "shape.onespike", tensors=tensors), "shape",
           "layers.0.edge0_weight")
    tensors = load_file(str(saved))
    tensors["layers.0.G"] = tensors["layers.0.G"].float()
    _fails(_rewrite(saved, tmp_path / "dtype.onespike", tensors=tensors), "dtype",
           "layers.0.G")


def test_consistent_but_wrong_description(saved, tmp_path) -> None:
    """Manifest and tensors agree, digest is valid, but the description is inconsistent."""
    doc = _doc(saved)
    doc["layers"][0]["edges"][0]["kind"] = "linear"
    doc["layers"][0]["edges"][0]["in_shape"] = [7]
    _fails(_rewrite(saved, tmp_path / "geo.onespike", doc=doc), "inconsistent")
    doc = _doc(saved)
    del doc["layers"][1]["t_min"]
    _fails(_rewrite(saved, tmp_path / "field.onespike", doc=doc), "missing field")
    doc = _doc(saved)
    doc["neuron"] = "izhikevich"
    _fails(_rewrite(saved, tmp_path / "neuron.onespike", doc=doc), "neuron")


def _resaved(saved: Path, tmp_path: Path, name: str, edit) -> Path:
    doc = _doc(saved)
    edit(doc)
    return _rewrite(saved, tmp_path / f"{name}.onespike", doc=doc)


def test_v2_description_defects(saved, tmp_path) -> None:
    """Version-2 fields: route types, edge sources, delays, shapes that must chain."""
    def route_type(doc):
        doc["layers"][1]["edges"][0]["routes"][0]["type"] = "avgpool"
    _fails(_resaved(saved, tmp_path, "rtype", route_type), "inconsistent",
           "unknown route type 'avgpool'")

    def later_source(doc):
        doc["layers"][0]["edges"][0]["source"] = doc["layers"][1]["name"]
    _fails(_resaved(saved, tmp_path, "later", later_source), "inconsistent",
           "neither 'input' nor an earlier population")

    def unknown_source(doc):
        doc["layers"][1]["edges"][0]["source"] = "nowhere"
    _fails(_resaved(saved, tmp_path, "nowhere", unknown_source), "'nowhere'")

    def self_source(doc):
        doc["layers"][1]["edges"][0]["source"] = doc["layers"][1]["name"]
    _fails(_resaved(saved, tmp_path, "self", self_source), "earlier population")

    def negative_delay(doc):
        doc["layers"][1]["edges"][0]["delay"] = -0.25
    _fails(_resaved(saved, tmp_path, "delay", negative_delay), "negative delay")

    def nan_delay(doc):
        doc["layers"][1]["edges"][0]["delay"] = "soon"
    _fails(_resaved(saved, tmp_path, "nandelay", nan_delay), "delay", "finite number")

    def route_in_shape(doc):
        doc["layers"][1]["edges"][0]["routes"][0]["in_shape"] = [4, 9, 9]
    _fails(_resaved(saved, tmp_path, "rshape", route_in_shape), "route 0 expects input")

    def edge_in_shape(doc):
        doc["layers"][2]["edges"][0]["in_shape"] = [25]
    _fails(_resaved(saved, tmp_path, "eshape", edge_in_shape), "in_shape")

    def out_shape(doc):
        doc["layers"][0]["out_shape"] = [4, 8, 9]
    _fails(_resaved(saved, tmp_path, "oshape", out_shape), "bias shape")

    def no_edges(doc):
        doc["layers"][0]["edges"] = []
    _fails(_resaved(saved, tmp_path, "noedges", no_edges), "no incoming edges")

    def extra_edge(doc):
        doc["layers"][2]["edges"].append(dict(doc["layers"][2]["edges"][0]))
    _fails(_resaved(saved, tmp_path, "extraedge", extra_edge), "edge 1",
           "no weight tensor layers.2.edge1_weight")

    def unsigned(doc):
        doc["layers"][1]["edges"][0]["routes"][0]["signed"] = False
    _fails(_resaved(saved, tmp_path, "unsigned", unsigned), "sign")

    def duplicate(doc):
        doc["layers"][1]["name"] = doc["layers"][0]["name"]
    _fails(_resaved(saved, tmp_path, "dup", duplicate), "used twice")

    def no_role(doc):
        del doc["layers"][0]["role"]
    _fails(_resaved(saved, tmp_path, "role", no_role), "missing field", "role")


def test_same_network_same_bytes(snn, tmp_path) -> None:
    """Saving twice (and saving the loaded copy) gives identical bytes; the safetensors
    header and its metadata map have sorted keys."""
    a = onespike.save(snn, tmp_path / "a.onespike").read_bytes()
    b = onespike.save(snn, tmp_path / "b.onespike").read_bytes()
    assert a == b
    c = onespike.save(onespike.load(tmp_path / "a.onespike"), tmp_path / "c.onespike")
    assert c.read_bytes() == a
    (n,) = struct.unpack("<Q", a[:8])
    header = json.loads(a[8:8 + n])
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    text = header["__metadata__"]["onespike"]
    assert text == json.dumps(json.loads(text), sort_keys=True)


def _residual_net() -> nn.Module:
    """torchvision-style stem + BasicBlock (identity shortcut) + stride-2 BasicBlock with a
    1x1-conv + BN projection shortcut + global pool + fc."""
    torch.manual_seed(3)
    body = nn.Sequential(dag_nets.BasicBlock(4, 4),
                         dag_nets.BasicBlock(4, 6, stride=2,
                                             downsample=dag_nets._projection(4, 6, 2)))
    model = dag_nets._Stem(2, 4, body, 6, num_classes=3)
    dag_nets.randomize_bn(model)
    return model.double().eval()


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
def test_round_trip_residual(neuron, tmp_path) -> None:
    x = torch.rand(16, 2, 8, 8, generator=torch.Generator().manual_seed(4),
                   dtype=torch.float64)
    net = onespike.convert(_residual_net(), x, neuron=neuron, progress=False)
    assert any(len(p.edges) > 1 for p in net.layers), "a residual sum expected"
    shortcuts = [e.origin for p in net.layers for e in p.edges if e.delay > 0]
    assert "identity" in shortcuts and any("downsample" in o for o in shortcuts), shortcuts
    loaded = onespike.load(onespike.save(net, tmp_path / "res.onespike"))
    _assert_identical(net, loaded, x)
    sa, sb = net.summary(), loaded.summary()
    assert sa == sb
    assert [[e["delay"] for e in ly["edges"]] for ly in sb["layers"]] == \
        [[e.delay for e in p.edges] for p in net.layers]
    assert [[e["source"] for e in ly["edges"]] for ly in sb["layers"]] == \
        [[e.source for e in p.edges] for p in net.layers]
    assert [p.role for p in loaded.layers] == [p.role for p in net.layers]
    assert [[e.origin for e in p.edges] for p in loaded.layers] == \
        [[e.origin for e in p.edges] for p in net.layers]


def _sliced_net() -> onespike.SpikingNetwork:
    """Hand-built DAG: a hidden population fed by a strided slice of the input, and a readout
    summing it with a delayed edge straight from the input."""
    from onespike.network.population import EdgeSpec, Population
    from onespike.simulation.routing import ReshapeRoute, SliceRoute

    g = torch.Generator().manual_seed(5)
    dt = torch.float64
    sl = SliceRoute(((0, 1, 1), (0, 4, 2), (1, None, 2)), (1, 4, 4), (1, 2, 2), "x[::2, 1::2]")
    hidden = Population(
        name="h", source="slice", edges=[EdgeSpec("input", [sl, ReshapeRoute((1, 2, 2), (4,))],
                                                   "linear", (4,), origin="fc1")],
        weights=[(torch.rand(3, 4, generator=g, dtype=dt) - 0.3) * 0.25],
        bias=torch.rand(3, generator=g, dtype=dt) * 0.1, neuron="alpha", readout=False,
        t_min=1.0, t_max=2.5, B_in=1.0, X=1.0,
    )
    readout = Population(
        name="readout", source="readout",
        edges=[EdgeSpec("h", [], "linear", (3,), origin="fc2"),
               EdgeSpec("input", [ReshapeRoute((1, 4, 4), (16,))], "linear", (16,),
                        delay=1.5, origin="skip")],
        weights=[torch.rand(2, 3, generator=g, dtype=dt) * 0.3,
                 (torch.rand(2, 16, generator=g, dtype=dt) - 0.5) * 0.1],
        bias=torch.zeros(2, dtype=dt), neuron="alpha", readout=True, t_min=2.5, t_max=2.5,
        B_in=1.5, X=0.0,
    )
    return onespike.SpikingNetwork(
        [hidden, readout], input_shape=(1, 4, 4), input_low=torch.zeros(1, 4, 4, dtype=dt),
        input_high=torch.ones(1, 4, 4, dtype=dt), output_routes=[], neuron="alpha", zeta=0.5)


def test_round_trip_slice_route_and_delay(tmp_path) -> None:
    net = _sliced_net()
    path = onespike.save(net, tmp_path / "slice.onespike")
    doc = _doc(path)
    route = doc["layers"][0]["edges"][0]["routes"][0]
    assert route["type"] == "slice" and route["slices"] == [[0, 1, 1], [0, 4, 2], [1, None, 2]]
    assert doc["layers"][1]["edges"][1]["delay"] == 1.5
    loaded = onespike.load(path)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    _assert_identical(net, loaded, x)
    assert loaded.layers[0].edges[0].routes[0].slices == ((0, 1, 1), (0, 4, 2), (1, None, 2))
    # a slice whose out_shape does not fit its slices
    route["out_shape"] = [1, 2, 3]
    _fails(_rewrite(path, tmp_path / "badslice.onespike", doc=doc), "slice route gives shape")


def test_not_a_onespike_file(tmp_path) -> None:
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(st_save({"w": torch.zeros(2)}))
    _fails(plain, "not a onespike file")
    text = tmp_path / "notes.onespike"
    text.write_text("hello, this is not a network\n" * 10)
    _fails(text)
    empty = tmp_path / "empty.onespike"
    empty.write_bytes(b"")
    _fails(empty, "0 bytes")
    _fails(tmp_path, "directory")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


def test_pickle_is_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "unpickled"
    bad = tmp_path / "evil.onespike"
    bad.write_bytes(pickle.dumps(_Evil(marker)))
    _fails(bad)
    pt = tmp_path / "evil.pt"
    torch.save({"x": _Evil(marker)}, pt)
    _fails(pt)
    assert not marker.exists()


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.onespike"):
        onespike.load(tmp_path / "nope.onespike")


def test_save_rejects_non_networks(tmp_path) -> None:
    with pytest.raises(TypeError):
        onespike.save(nn.Linear(2, 2), tmp_path / "x.onespike")  # type: ignore[arg-type]
