"""Whole-image prediction: padding to the stride, cropping back, and blended overlapping tiles."""

from surrogate_supervision.models import build_deeplabv3plus
from surrogate_supervision.models.runner import runtime
from surrogate_supervision.models.runner.inference import InferenceScheme, Predictor, _starts, untrained_tap_masks

import keras
import numpy as np
import pytest
import tensorflow as tf


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pixelwise_model(num_outputs, seed=0):
    """A 1×1 convolution: each output pixel depends on its input pixel only, so tiling must be exact."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(num_outputs, 1, kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                                  bias_initializer=keras.initializers.RandomNormal(seed=seed + 1))(inputs)
    return keras.Model(inputs, outputs)


class PatchSpy:
    """Records the patch sizes a Predictor sends through the network."""

    def __init__(self, predictor):
        self.shapes, self.whole = [], predictor._whole
        predictor._whole = self

    def __call__(self, image):
        self.shapes.append(image.shape[:2])
        return self.whole(image)


@pytest.fixture(scope="module")
def deeplab():
    return build_deeplabv3plus(3, width=0.125)


def test_images_of_every_size_share_one_trace(deeplab):
    """A trace of the network takes seconds: validating and testing on images of many sizes must not retrace."""
    predictor = Predictor(deeplab, train_crop=65)
    for side in (37, 50, 81, 100):
        predictor.labels(random_image(side, side + 7))

    assert predictor.traced.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("length, tile, stride", [(90, 33, 24), (70, 33, 24), (81, 33, 24), (34, 33, 24),
                                                  (33, 33, 24), (20, 33, 24), (100, 33, 1)])
def test_starts_cover_the_range_with_the_last_tile_flush(length, tile, stride):
    starts = _starts(length, tile, stride)

    assert starts[0] == 0
    assert starts[-1] == max(length - tile, 0)
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all()


def test_whole_image_logits_have_the_image_size(deeplab):
    predictor = Predictor(deeplab, train_crop=65)
    image = random_image(37, 50)

    logits = predictor.logits(image)
    labels = predictor.labels(image)

    assert logits.shape == (37, 50, 3)
    assert np.isfinite(logits).all()
    assert labels.shape == (37, 50) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, logits.argmax(-1))


def test_tiled_deeplab_logits_have_the_image_size(deeplab):
    predictor = Predictor(deeplab, train_crop=65, scheme=InferenceScheme(tile=33, overlap=0.25))
    spy = PatchSpy(predictor)

    logits = predictor.logits(random_image(90, 70))

    assert logits.shape == (90, 70, 3)
    assert np.isfinite(logits).all()
    assert len(spy.shapes) == 4 * 3 and max(max(s) for s in spy.shapes) <= 33


def test_tiles_blend_to_exactly_the_whole_image_prediction():
    model = pixelwise_model(4)
    image = random_image(90, 70, seed=3)
    tiled = Predictor(model, scheme=InferenceScheme(tile=33, overlap=0.25))
    spy = PatchSpy(tiled)

    expected = Predictor(model).logits(image)
    actual = tiled.logits(image)

    assert len(spy.shapes) > 1  # the tiled path ran
    assert actual.shape == expected.shape == (90, 70, 4)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_one_output_model_labels_are_sigmoid_above_half():
    model = pixelwise_model(1, seed=5)
    predictor = Predictor(model)
    image = random_image(21, 30, seed=4)

    logits = predictor.logits(image)

    assert 0 < (logits > 0).mean() < 1  # both labels occur, so the threshold is tested
    np.testing.assert_array_equal(predictor.labels(image), (logits[..., 0] > 0).astype(np.uint8))


@pytest.mark.parametrize("side, padded", [(193, 193), (200, 209), (208, 209), (37, 49)])
def test_whole_images_go_in_on_the_training_grid(deeplab, side, padded):
    """Sides are padded to 16k + 1, as training crops (513, 193) are, never to a multiple of 16."""
    predictor = Predictor(deeplab, train_crop=65)
    forward, seen = predictor._forward, []
    predictor._forward = lambda x: seen.append(tuple(x.shape[1:3])) or forward(x)

    assert predictor.logits(random_image(side, 50)).shape == (side, 50, 3)
    assert seen == [(padded, 65)]


def test_a_predictor_switches_the_slow_remapper_off_and_predicts_the_same(deeplab, monkeypatch):
    """On a CPU where the fused convolutions are slow the Predictor runs unfused: same logits, 10× faster there."""
    image = random_image(40, 56)
    toolkit_choice = runtime.slow_fused_inference_reason() is None  # what later tests should run with
    tf.config.optimizer.set_experimental_options({"remapping": True})  # TensorFlow's default, made explicit
    fused = Predictor(deeplab, train_crop=65).logits(image)
    remapper_setting = tf.config.optimizer.get_experimental_options
    monkeypatch.setattr(runtime, "slow_fused_inference_reason", lambda: "this CPU has no AVX-512")
    monkeypatch.setattr(runtime.tf.config.optimizer, "get_experimental_options", dict)  # as if the user set none
    try:
        unfused = Predictor(deeplab, train_crop=65)
        assert remapper_setting()["remapping"] is False
        np.testing.assert_allclose(unfused.logits(image), fused, rtol=1e-5, atol=1e-5)
    finally:  # the option cannot be unset: leave this CPU's own choice, not the fused path, to later tests
        tf.config.optimizer.set_experimental_options({"remapping": toolkit_choice})


def aspp_kernel(model, rate):
    return model.get_layer(f"aspp_r{rate}_depthwise").kernel.numpy()


def randomise_kernels(model, seed=0):
    """Every dilated kernel drawn at random, so taps training never reached are not zero to begin with."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "dilation_rate", (1, 1)) != (1, 1):
            layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype(np.float32))


def test_taps_that_a_training_crop_cannot_reach_are_zeroed_and_its_predictions_do_not_change():
    """At crop 65 and output stride 16 the ASPP map is 5×5: every off-centre tap of rates 6/12/18 reads only padding
    there, so it never trained; zeroing it leaves the training crop's logits as they were and changes larger
    images' (where it would act on real features)."""
    keras.utils.set_random_seed(1)
    model = build_deeplabv3plus(3, width=0.125)
    randomise_kernels(model)
    crop_image, large_image = random_image(65, 65, seed=1), random_image(161, 161, seed=2)
    keep = Predictor(model, scheme=InferenceScheme(untrained_taps="keep"))
    before_crop, before_large = keep.logits(crop_image), keep.logits(large_image)
    r18 = aspp_kernel(model, 18)

    zero = Predictor(model, train_crop=65)
    after_crop, after_large = zero.logits(crop_image), zero.logits(large_image)

    kernel = aspp_kernel(model, 18)
    np.testing.assert_array_equal(kernel[1, 1], r18[1, 1])  # the centre tap trained: kept
    off_centre = np.ones((3, 3), bool)
    off_centre[1, 1] = False
    assert not kernel[off_centre].any() and r18[off_centre].any()
    assert {layer.name for layer, _ in zero.masks} == {"aspp_r6_depthwise", "aspp_r12_depthwise", "aspp_r18_depthwise"}
    np.testing.assert_allclose(after_crop, before_crop, rtol=1e-4, atol=1e-4)
    assert np.abs(after_large - before_large).max() > 1e-3


def test_a_crop_whose_map_reaches_every_tap_zeroes_nothing():
    """The reference 513 crop gives a 33×33 map at output stride 16, wide enough for the rate-18 taps."""
    model = build_deeplabv3plus(3, width=0.125)
    assert untrained_tap_masks(model, 513) == []
    assert {layer.name for layer, _ in untrained_tap_masks(model, 257)} == {"aspp_r18_depthwise"}  # 17×17 map


def test_taps_brought_back_by_a_restore_are_zeroed_again_before_the_next_prediction():
    """Training restores checkpoints, and scoring loads the best one, after the Predictor was made: every prediction
    zeroes the untrained taps first, so no restored value reaches a score."""
    model = build_deeplabv3plus(3, width=0.125)
    predictor = Predictor(model, train_crop=65)
    randomise_kernels(model)  # as a restore of weights written before the taps were zeroed would
    assert any((layer.kernel.numpy() * (1 - mask)).any() for layer, mask in predictor.masks)

    predictor.logits(random_image(97, 97))

    assert not any((layer.kernel.numpy() * (1 - mask)).any() for layer, mask in predictor.masks)


def test_the_scheme_reads_back_from_a_run_record_and_rejects_bad_values():
    scheme = InferenceScheme(tile=129, untrained_taps="keep")
    assert InferenceScheme.from_dict(scheme.as_dict()) == scheme
    assert scheme.replace(tile=None, overlap=0.5) == InferenceScheme(tile=129, overlap=0.5, untrained_taps="keep")
    with pytest.raises(ValueError, match="untrained_taps"):
        InferenceScheme(untrained_taps="random")
    with pytest.raises(ValueError, match="train_crop"):
        Predictor(build_deeplabv3plus(2, width=0.125))
