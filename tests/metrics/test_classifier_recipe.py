"""The reference classifier's recipe: how many images it trains on."""

from vaelab.metrics.classifier import Recipe


def test_small_datasets_train_on_the_pixels_of_60000_mnist_images():
    recipe = Recipe()
    assert recipe.images(60_000) == 60_000 and recipe.images(4_000) == 60_000  # MNIST; mnist-sample: 15 epochs
    assert recipe.images(9_000, (3, 64, 64)) == 11_485  # 60,000 * 784 / 4,096, rounded up
    assert recipe.images(200_000, (3, 64, 64)) == 200_000  # a large dataset: one epoch
    assert recipe.images(9_000, (3, 16, 16)) == 60_000  # smaller images than MNIST's: still 60,000
