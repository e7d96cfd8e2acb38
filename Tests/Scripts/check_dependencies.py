#!/usr/bin/env python3
"""Every target's declared dependencies are exactly the modules its sources import.

Reads Package.swift's targets (name, path by convention, dependencies) and the `import`
lines of each target's Swift files; prints every difference and exits 1 if there is one.
Modules of the toolchain (Foundation, Glibc, Testing, …) are not dependencies.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLCHAIN = {"Foundation", "FoundationEssentials", "FoundationNetworking", "Glibc", "Dispatch", "Synchronization",
             "Testing", "XCTest", "_Concurrency", "Darwin", "os", "Musl"}


def targets(manifest: str):
    for match in re.finditer(r'\.(target|executableTarget|testTarget)\(\s*name:\s*"([^"]+)"', manifest):
        kind, name = match.group(1), match.group(2)
        start = match.end()
        # The target's own argument list: up to the parenthesis that closes `.target(`.
        depth, index = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(manifest[index], 0)
            index += 1
        body = manifest[start:index]
        deps = set()
        dependencies = re.search(r"dependencies:\s*\[", body)
        if dependencies:
            depth, end = 1, dependencies.end()
            while depth:
                depth += {"[": 1, "]": -1}.get(body[end], 0)
                end += 1
            listed = body[dependencies.end():end - 1]
            deps |= set(re.findall(r'\.product\(name:\s*"([^"]+)"', listed))
            deps |= set(re.findall(r'(?<!name: )(?<!package: )"([A-Za-z0-9_-]+)"', re.sub(r'\.product\([^)]*\)', "", listed)))
        yield kind, name, deps


def imports(directory: pathlib.Path):
    found = set()
    for file in directory.rglob("*.swift"):
        for line in file.read_text().splitlines():
            # Imports lead a file; later "import" lines are text (Python in a string literal).
            if line.strip() and not re.match(r"\s*(//|#if|#else|#endif|(@\w+\s+)*import\s)", line):
                break
            match = re.match(r"\s*(?:@testable\s+|@_implementationOnly\s+|@preconcurrency\s+)?import\s+(?:(?:struct|class|enum|func|protocol|typealias)\s+)?([A-Za-z0-9_]+)", line)
            if match:
                found.add(match.group(1))
    return found - TOOLCHAIN


def main() -> int:
    manifest = (ROOT / "Package.swift").read_text()
    problems = []
    for kind, name, declared in targets(manifest):
        directory = ROOT / ("Tests" if kind == "testTarget" else "Sources") / name
        if not directory.is_dir():
            continue
        used = imports(directory)
        # A C module target (headers only) imports nothing in Swift.
        if not any(directory.rglob("*.swift")):
            continue
        for module in sorted(used - declared - {name}):
            problems.append(f"{name}: imports {module}, which it does not declare")
        for module in sorted(declared - used):
            problems.append(f"{name}: declares {module}, which it never imports")
    for problem in problems:
        print(problem)
    print(f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
