"""kit serve: a model (or a bundle's best model here) over HTTP (kit.deploy.serve)."""

from __future__ import annotations

import os

from kit.cli import args as flags
from kit.cli import render

MAX_PIXELS = 8192 * 8192  # OpenCV refuses to decode larger images (preprocess.MAX_SIDE squared)


def add_parser(commands, common) -> None:
    parser = commands.add_parser("serve", parents=[common],
                                 help="serve a model over HTTP: POST /predict, GET /info, /health, /stream")
    parser.add_argument("model", help="model file or bundle folder (its best model here)")
    parser.add_argument("--model", dest="bundle_model", metavar="NAME",
                        help="with a bundle: serve this model of it instead of the one chosen for this device")
    flags.add_runtime(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    parser.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument("--source", metavar="SRC", help="also run this camera, video, stream or folder (a file "
                                                        "loops at its own rate) and show its annotated frames at "
                                                        "GET /stream (MJPEG)")
    parser.add_argument("--max-bytes", type=flags.positive_int, metavar="N",
                        help="largest request body accepted (default 16 MiB)")
    flags.add_task(parser)
    flags.add_preprocess(parser)
    flags.add_threads(parser)
    parser.set_defaults(handler=handle)


def port_number(text: str) -> int:
    import argparse

    port = flags.non_negative_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, found {port}")
    return port


def handle(args) -> int:
    # Before anything loads OpenCV, which reads its decoding limit once: a small compressed
    # image that decodes to gigabytes is refused instead of allocated.
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    from kit.core import provenance
    from kit.deploy.serve import MAX_BYTES, Service, make_server, serve_until_stopped
    from kit.deploy.sources import open_source
    from kit.deploy.stream import FrameProcessor
    from kit.runtimes.registry import load

    choice = flags.bundle_choice(args.model, args.bundle_model, args.runtime)
    model, runtime = (str(choice.path), choice.runtime) if choice else (args.model, args.runtime)
    options = {"threads": args.threads} if args.threads is not None else {}
    console = render.console()
    with load(model, runtime, **options) as rt:
        stored = provenance.read(model)
        task = flags.task_from(args, stored.get("task"))
        processor = FrameProcessor.for_model(rt, task, stored.get("preprocess"), args.preprocess, model=model)
        source = open_source(args.source, prepare=processor.prepare, loop=True) if args.source else None
        info = {"model": {"model": model, "bundle": choice.to_dict() if choice else None, "runtime": rt.info},
                "task": task.to_dict() if task else None, "inputs": [s.to_dict() for s in rt.inputs],
                "outputs": [s.to_dict() for s in rt.outputs], "preprocess": processor.steps.to_dict(),
                "provenance": stored, "source": source.description if source else None}
        service = Service(processor, info, source)
        try:
            server = make_server(service, args.host, args.port, args.max_bytes or MAX_BYTES)
        except BaseException:
            service.stop()
            raise
        host, port = server.server_address[:2]
        url = f"http://{host}:{port}"
        endpoints = ["POST /predict", "GET /info", "GET /health"] + (["GET /stream"] if source else [])
        if args.json:
            render.print_json({"url": url, "endpoints": endpoints})
        else:
            if choice:
                console.print(f"bundle: chose {choice.why}", highlight=False)
            console.print(f"serving {model} on {rt.info['runtime']} at {url}", highlight=False)
            console.print(f"{', '.join(endpoints)}; Ctrl-C stops", highlight=False)
            if host not in ("127.0.0.1", "::1"):
                console.print(render.styled("note:", "yellow"), f"listening on {host}: any machine that reaches "
                              "this one can send images (no authentication).")
        console.file.flush()
        stopped = serve_until_stopped(server, service)
    if args.json:
        return render.print_json({"stopped": stopped})
    console.print(f"stopped ({stopped})", highlight=False)
    return 0
