"""The source material's models, one module per seed section: its settings (learning rate,
steps, batch size) and its pure functions (init, logits, loss, train).

``examples/NAME.py`` imports ``funcgrad.tutorials.NAME`` and prints what the seed prints;
the comparison case of the same section reads the same settings on both of its sides, so
an edited learning rate changes the JAX port and its PyTorch twin together.

    from funcgrad.tutorials import iris_softmax
    params, losses = iris_softmax.train(iris_softmax.init_params(key), x, y)
"""
