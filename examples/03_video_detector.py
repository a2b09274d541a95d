"""Detect objects in every frame of a video, boxes in the video's own pixels, and write the video
with the boxes drawn: jetson-inference's detectnet loop, for any detector the kit exported.

Run from any folder: python examples/03_video_detector.py
It trains the detection demo's shape detector briefly (about 15 s on one core), exports it with
its task, labels and preprocessing, renders scenes.avi (256x256 frames of the demo's synthetic
shapes), then writes boxes.mp4 and detections.jsonl.
"""

import numpy as np

from kit.deploy.sources import open_source
from kit.deploy.stream import FrameProcessor, run_stream


def make_detector_and_video() -> tuple[str, str]:
    import cv2

    from kit.detect_demo import PREPROCESS, train_shape_detector
    from kit.export import export_onnx
    from kit.synthetic import CLASSES, render

    model = train_shape_detector(render(1000, seed=1), epochs=6)
    export_onnx(model, "shapes.onnx", input_shapes="1x3x64x64", preprocess=PREPROCESS,
                task={"name": "detect", "labels": list(CLASSES)})
    writer = cv2.VideoWriter("scenes.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for scene in render(30, seed=2):  # the detector sees 64x64; the video is 4x larger
        writer.write(cv2.resize(scene.image, (256, 256), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return "shapes.onnx", "scenes.avi"


def main() -> None:
    model, video = make_detector_and_video()

    first_boxes = None
    with FrameProcessor.open(model) as net, open_source(video, prepare=net.prepare) as frames:
        for frame in frames:
            boxes = net(frame.image, frame.prepared).results  # [{"box": [x1, y1, x2, y2], "score", "label"}]
            first_boxes = boxes if first_boxes is None else first_boxes
            if frame.index < 3:
                found = ", ".join(f"{b['label']} {b['score']:.2f} at {[round(v) for v in b['box']]}" for b in boxes)
                print(f"frame {frame.index}: {found or 'nothing'}")

        import cv2

        alone = net(cv2.VideoCapture(video).read()[1]).results
        difference = max((float(np.abs(np.subtract(a["box"], b["box"])).max()) for a, b in zip(first_boxes, alone)),
                         default=0.0)
        print(f"{len(alone)} boxes in the first frame; in pixels, max |box in the loop - box of the frame alone| "
              f"= {difference:.2e}")

        result = run_stream(net, open_source(video, prepare=net.prepare), save="boxes.mp4", jsonl="detections.jsonl")
    stages = result.stages()
    print(f"{result.frames} frames at {result.fps:.0f} FPS; per frame: inference {stages['inference']['mean_ms']:.2f} "
          f"ms, postprocess (decode and NMS) {stages['postprocess']['mean_ms']:.2f} ms; wrote boxes.mp4")


if __name__ == "__main__":
    main()
