"""DeepLabV3+ segmenter and colorization generator: shapes, ASPP rates, separable/regular 3×3 layers."""

from surrogate_supervision.models import build_deeplabv3plus, build_generator
from surrogate_supervision.models.deeplab import HEAD_LAYER, ResizeLike, stride4_size

import keras
import numpy as np
import pytest

WIDTH = 0.125
NUM_CLASSES = 5


@pytest.fixture(scope="module")
def segmenter():
    return build_deeplabv3plus(NUM_CLASSES, width=WIDTH)


@pytest.fixture(scope="module")
def generator():
    return build_generator(width=WIDTH)


def _image(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def test_segmenter_logits_at_input_resolution_513(segmenter):
    logits = segmenter(_image(1, 513, 513, 3))
    assert tuple(logits.shape) == (1, 513, 513, NUM_CLASSES)
    assert logits.dtype == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(logits)).all()


def test_segmenter_handles_odd_non_square_inputs(segmenter):
    assert tuple(segmenter(_image(2, 64, 100, 3)).shape) == (2, 64, 100, NUM_CLASSES)


def test_generator_output_513_is_stride4_rgb_in_range(generator):
    rgb = keras.ops.convert_to_numpy(generator(_image(1, 513, 513, 3)))
    assert rgb.shape == (1, 129, 129, 3)
    assert rgb.dtype == np.float32
    assert rgb.min() >= -1.0 and rgb.max() <= 1.0
    assert rgb.std() > 0  # not a constant map


def test_stride4_size_of_513():
    assert stride4_size(513) == 129


@pytest.mark.parametrize("side", [64, 65, 100, 128])
def test_stride4_size_matches_generator(generator, side):
    assert tuple(generator(_image(1, side, side, 3)).shape) == (1, stride4_size(side), stride4_size(side), 3)


def centre_tap(model):
    """Weights that turn the network into a sampler: every convolution passes its centre tap on (to every
    output channel, averaged over inputs), BatchNorm is the identity, image pooling is off. A single bright
    pixel then travels along exactly the grid positions each layer maps it to."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = np.zeros(layer.kernel.shape, np.float32)
            kh, kw = kernel.shape[:2]
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            kernel[kh // 2, kw // 2] = 1.0 if depthwise else 1.0 / kernel.shape[2]
            layer.kernel.assign(0 * kernel if layer.name == "aspp_pool_conv" else kernel)
    return model


@pytest.fixture(scope="module", params=[16, 8])
def sampler(request):
    return centre_tap(build_deeplabv3plus(1, width=WIDTH, output_stride=request.param))


@pytest.mark.parametrize("side", [193, 200, 208, 209])
def test_a_bright_pixel_comes_out_where_it_went_in_at_every_size(sampler, side):
    """Feature and input grids line up at any input size: the logits of a single bright pixel at (96, 128)
    peak on it and fall off symmetrically. Corner-aligned resizing moved the peak at sides other than
    16k + 1 (to row 97 of 208)."""
    image = np.zeros((1, side, side, 3), np.float32)
    image[0, 96, 128] = 1.0

    logits = keras.ops.convert_to_numpy(sampler(image))[0, ..., 0]

    assert np.unravel_index(logits.argmax(), logits.shape) == (96, 128)
    np.testing.assert_allclose(logits[96 - 15:96, 128], logits[96 + 15:96:-1, 128], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(logits[96, 128 - 15:128], logits[96, 128 + 15:128:-1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("side", [193, 200, 208, 385, 400])
@pytest.mark.parametrize("ratio", [2, 4, 16])
def test_upsampling_puts_sample_j_on_pixel_ratio_times_j(side, ratio):
    """Bilinear between samples, the last one repeated past the end: the NumPy reference is np.interp."""
    pixels = np.arange(side, dtype=np.float64)
    profile = np.sin(pixels / 7.0) + (pixels / side) ** 2
    samples = profile[::ratio]  # (side - 1) // ratio + 1 of them, as a stride-`ratio` map has
    grid = np.outer(samples, np.ones(3))[None, ..., None].astype(np.float32)  # (1, m, 3, 1)
    reference = np.zeros((1, side, 3 * ratio - ratio + 1, 1), np.float32)

    out = keras.ops.convert_to_numpy(ResizeLike(ratio)(grid, reference))[0, :, 0, 0]

    expected = np.interp(pixels, pixels[::ratio], samples)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_generator_and_segmenter_share_every_layer_but_head(segmenter, generator):
    def weighted(model):
        return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}

    seg, gen = weighted(segmenter), weighted(generator)
    assert seg.keys() == gen.keys()
    assert [name for name in seg if seg[name] != gen[name]] == [HEAD_LAYER]
    assert gen[HEAD_LAYER][0][-1] == 3 and seg[HEAD_LAYER][0][-1] == NUM_CLASSES
    assert generator.architecture.outputs == 3
    assert segmenter.architecture.to_dict() == {"backbone": "resnet50", "output_stride": 16, "width": WIDTH,
                                                "separable": True, "atrous_rates": [6, 12, 18],
                                                "outputs": NUM_CLASSES, "output": None}


def test_aspp_rates_at_output_stride_16(segmenter):
    for rate in (6, 12, 18):
        assert segmenter.get_layer(f"aspp_r{rate}_depthwise").dilation_rate == (rate, rate)


def test_aspp_rates_double_at_output_stride_8():
    model = build_deeplabv3plus(NUM_CLASSES, width=WIDTH, output_stride=8)
    names = {layer.name for layer in model.layers}
    for rate in (12, 24, 36):
        assert model.get_layer(f"aspp_r{rate}_depthwise").dilation_rate == (rate, rate)
    assert not {"aspp_r6_depthwise", "aspp_r18_depthwise"} & names
    assert model.get_layer("conv5_block1_2_conv").dilation_rate == (4, 4)
    assert tuple(model(_image(1, 65, 65, 3)).shape) == (1, 65, 65, NUM_CLASSES)


def test_separable_layer_names(segmenter):
    names = {layer.name for layer in segmenter.layers}
    for block in ("aspp_r6", "aspp_r12", "aspp_r18", "decoder_conv1", "decoder_conv2"):
        assert {f"{block}_depthwise", f"{block}_pointwise"} <= names
        assert f"{block}_conv" not in names
        assert isinstance(segmenter.get_layer(f"{block}_depthwise"), keras.layers.DepthwiseConv2D)


def test_regular_convolutions_when_not_separable():
    model = build_deeplabv3plus(NUM_CLASSES, width=WIDTH, separable=False)
    names = {layer.name for layer in model.layers}
    assert not any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in model.layers)
    assert not any(name.endswith(("_depthwise", "_pointwise")) for name in names)
    for block, rate in (("aspp_r6", 6), ("aspp_r12", 12), ("aspp_r18", 18), ("decoder_conv1", 1), ("decoder_conv2", 1)):
        conv = model.get_layer(f"{block}_conv")
        assert conv.kernel_size == (3, 3) and conv.dilation_rate == (rate, rate)
    assert model.architecture.separable is False
    assert tuple(model(_image(1, 65, 65, 3)).shape) == (1, 65, 65, NUM_CLASSES)


def test_decoder_joins_stride4_projection(segmenter):
    probe = keras.Model(segmenter.input, segmenter.get_layer("decoder_concat").output)
    # ASPP features (256 × 0.125 channels) upsampled to stride 4, beside the 48 × 0.125 → 8-channel projection.
    assert tuple(probe(_image(1, 65, 65, 3)).shape) == (1, 17, 17, 32 + 8)


def test_chroma_generator_keeps_the_input_luma_and_predicts_two_channels():
    generator = build_generator(width=WIDTH, output="chroma")
    gray = np.repeat(_image(2, 65, 65, 1, seed=3), 3, axis=-1)
    rgb = keras.ops.convert_to_numpy(generator(gray, training=False))
    assert rgb.shape == (2, 17, 17, 3) and rgb.dtype == "float32"
    assert generator.get_layer(HEAD_LAYER).filters == 2 and generator.architecture.output == "chroma"
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    unclipped = np.abs(rgb).max(-1) < 0.999
    np.testing.assert_allclose(luma[unclipped], gray[:, ::4, ::4, 0][unclipped], atol=2e-3)


def test_unknown_generator_output_is_refused():
    with pytest.raises(ValueError, match="'lab'.*rgb, chroma"):
        build_generator(width=WIDTH, output="lab")
