"""Classify every frame of a video, then run the whole loop with a labelled video as output:
a camera works the same way (give 0 or /dev/video0 as the source).

Run from any folder: python examples/02_video_classifier.py
It trains the demo's digits CNN (about 10 s on one core), exports it with its task and
preprocessing, writes digits.avi from held-out digits, then labelled.mp4 and results.jsonl.
"""

import numpy as np

from kit.deploy.sources import open_source
from kit.deploy.stream import FrameProcessor, run_stream


def make_model_and_video() -> tuple[str, str]:
    """The digits CNN as ONNX (labels 0-9 and grayscale preprocessing recorded) and a 10 FPS video."""
    import cv2

    from kit.demo import digits_split, train_digits_cnn
    from kit.export import export_onnx

    x_train, x_test, y_train, _ = digits_split()
    export_onnx(train_digits_cnn(x_train, y_train), "digits.onnx", input_shapes="1x1x8x8",
                preprocess="color=gray,scale=0.00392156862745098",
                task={"name": "classify", "labels": [str(d) for d in range(10)]})
    writer = cv2.VideoWriter("digits.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for image in np.round(x_test[:40, 0] * 255).astype(np.uint8):
        writer.write(cv2.cvtColor(cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR))
    writer.release()
    return "digits.onnx", "digits.avi"


def main() -> None:
    model, video = make_model_and_video()

    # The loop in a few lines: frames (decoded and preprocessed in their own thread), the model, labels.
    scores = []
    with FrameProcessor.open(model) as net, open_source(video, prepare=net.prepare) as frames:
        for frame in frames:
            best = net(frame.image, frame.prepared).results[0]
            scores.append(best["score"])
            if frame.index < 5:
                print(f"frame {frame.index} at {frame.timestamp:.1f} s: {best['label']} ({best['score']:.2f})")

        # The same frame alone gives the same answer as in the loop.
        import cv2

        first = cv2.VideoCapture(video).read()[1]
        print(f"max |score in the loop - score of the frame alone| = {abs(scores[0] - net(first).results[0]['score']):.2e}")

        # The whole loop, as kit run --source runs it: a labelled video, one JSON line per frame, stage times.
        result = run_stream(net, open_source(video, prepare=net.prepare), save="labelled.mp4", jsonl="results.jsonl")
    print(f"{result.frames} frames at {result.fps:.0f} FPS, {result.dropped} dropped; inference "
          f"{result.stages()['inference']['p50_ms']:.3f} ms at the median; wrote labelled.mp4 and results.jsonl")


if __name__ == "__main__":
    main()
