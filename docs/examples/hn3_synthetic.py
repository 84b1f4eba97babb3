import jax
from jaxcl.data import load_benchmark
from jaxcl.train.loop import train_stream
from jaxcl.learners import StrategyConfig, build_strategy

stream = load_benchmark("synthetic", seed=0, num_tasks=5, classes_per_task=2, image_size=32,
                        train_per_class=500)  # 75 steps an experience at 5 epochs of 64
for preset in ("jaxcl", "paper"):  # jaxcl's defaults, then the paper's settings
    config = StrategyConfig.from_label("HN-3", preset=preset, order=2, coef=0.5)
    strategy = build_strategy(config, num_tasks=5, classes_per_task=2,
                              sample_x=stream[0].x_train[:64])
    result = train_stream(strategy, stream, key=jax.random.key(0), epochs=5, batch_size=64)
    print(preset, "R[i, j], accuracy on experience j after training i:")
    print(result.matrix.round(2))
    print("before training each experience:", result.transfer.round(2))
