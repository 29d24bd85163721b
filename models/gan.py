"""The colorization GAN: a DeepLabV3+ generator against a conditional PatchGAN, pix2pix-style.

Losses (Mao et al., "Least Squares GANs", ICCV 2017; Isola et al., pix2pix, CVPR 2017), with g = gray input,
x = real RGB, G(g) the colorization and D_p(·, g) the logit of patch p, each averaged over the patches:
    least squares  D: ½[(D_p(x,g) − 1)² + D_p(G(g),g)²]      G: (D_p(G(g),g) − 1)² + λ·|G(g) − x|₁
    vanilla        D: BCE(D_p(x,g), 1) + BCE(D_p(G(g),g), 0)  G: BCE(D_p(G(g),g), 1) + λ·|G(g) − x|₁
The loss is taken per patch, then averaged, as pix2pix does: the loss of the mean logit would score a map
half at +1 and half at −1 as a perfect real, and lose the per-patch feedback that makes a PatchGAN local.
The generator's adversarial term is multiplied by μ (`gan_weight`, 1 in the recipe; 0 trains colour alone);
subclasses may replace the colour term λ·|G(g) − x|₁ through `generate` (see `models/colour_classify.py`).
"""

import keras
import tensorflow as tf

from surrogate_supervision.datasets import ToolkitError

GAN_LOSSES = ("lsgan", "vanilla")


def per_image(patch_losses):
    """Per-image loss: the mean over the patch map (B, h, w, 1) → (B,)."""
    return tf.reduce_mean(patch_losses, axis=[1, 2, 3])


def discriminator_loss(real_logits, fake_logits, kind):
    """Per image, from the patch-logit maps of real and colorized pairs."""
    if kind == "lsgan":
        return per_image(0.5 * (tf.square(real_logits - 1.0) + tf.square(fake_logits)))
    bce = tf.nn.sigmoid_cross_entropy_with_logits  # per patch (Keras' BCE would average the batch too)
    return per_image(bce(labels=tf.ones_like(real_logits), logits=real_logits)
                     + bce(labels=tf.zeros_like(fake_logits), logits=fake_logits))


def generator_adversarial_loss(fake_logits, kind):
    """Per image, from the patch-logit map of colorized pairs."""
    if kind == "lsgan":
        return per_image(tf.square(fake_logits - 1.0))
    return per_image(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake_logits), logits=fake_logits))


class ColorizationGAN(keras.Model):
    """Generator + discriminator trained together; `train_step` updates D, then G, on each batch.

    Batches are dicts from `datasets.colorization_dataset`: `gray` (full-size generator input) and
    `rgb_small` / `gray_small` (the stride-4 real image and condition the discriminator sees).

    Example:
        >>> gan = ColorizationGAN(build_generator(width=0.25), build_discriminator())
        >>> gan.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
    """

    def __init__(self, generator, discriminator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_adv_tracker = keras.metrics.Mean(name="g_adv")
        self.g_l1_tracker = keras.metrics.Mean(name="g_l1")

    def compile(self, g_optimizer, d_optimizer, *, l1_weight=1.0, gan_loss="lsgan", gan_weight=1.0, **kwargs):
        if gan_loss not in GAN_LOSSES:
            raise ToolkitError(f"{gan_loss!r} unknown, supported: {', '.join(GAN_LOSSES)}", param="gan_loss")
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.l1_weight = l1_weight
        self.gan_loss = gan_loss
        self.gan_weight = gan_weight

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_adv_tracker, self.g_l1_tracker]

    def call(self, gray, training=False):
        return self.generator(gray, training=training)

    def generate(self, batch):
        """The colorization G(g) and its per-image colour term, λ·|G(g) − x|₁."""
        fake = self.generator(batch["gray"], training=True)
        return fake, self.l1_weight * tf.reduce_mean(tf.abs(fake - batch["rgb_small"]), axis=[1, 2, 3])

    def _replica_mean(self, per_example):
        """Mean over the global batch, so that summed replica gradients equal a single-device step."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.reduce_mean(per_example) / replicas

    def train_step(self, batch):
        gray_small, real = batch["gray_small"], batch["rgb_small"]
        with tf.GradientTape() as g_tape:
            # 1. One generator forward pass serves both updates (as in pix2pix).
            fake, colour = self.generate(batch)
            g_l1 = self._replica_mean(tf.reduce_mean(tf.abs(fake - real), axis=[1, 2, 3]))
            g_loss = self._replica_mean(colour)
            # With μ = 0 the generator ignores the discriminator, so it is neither run nor trained (its losses
            # read 0): a colour-only run costs the generator's step alone.
            d_loss = g_adv = tf.zeros((), fake.dtype)
            if self.gan_weight:
                # 2. Discriminator: real pairs towards 1, colorized pairs towards 0; the generator is held fixed.
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    real_logits = self.discriminator([real, gray_small], training=True)
                    fake_logits = self.discriminator([tf.stop_gradient(fake), gray_small], training=True)
                    d_loss = self._replica_mean(discriminator_loss(real_logits, fake_logits, self.gan_loss))
                    scaled = self.d_optimizer.scale_loss(d_loss)
                with g_tape.stop_recording():
                    d_vars = self.discriminator.trainable_variables
                    self.d_optimizer.apply_gradients(zip(d_tape.gradient(scaled, d_vars), d_vars))
                # 3. Generator: fool the updated discriminator and stay close to the real colours.
                fake_logits = self.discriminator([fake, gray_small], training=True)
                g_adv = self._replica_mean(generator_adversarial_loss(fake_logits, self.gan_loss))
                g_loss += self.gan_weight * g_adv
            scaled = self.g_optimizer.scale_loss(g_loss)
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(scaled, g_vars), g_vars))
        # 4. Report per-batch means (undo the per-replica division).
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.d_loss_tracker.update_state(d_loss * replicas)
        self.g_adv_tracker.update_state(g_adv * replicas)
        self.g_l1_tracker.update_state(g_l1 * replicas)
        return {m.name: m.result() for m in self.metrics}
