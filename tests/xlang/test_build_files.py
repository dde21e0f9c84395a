"""java/pom.xml and build.gradle declare the same dependencies, annotation processors, versions
and scopes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Maven scope -> Gradle configuration
_SCOPES = {"compile": "implementation", "runtime": "runtimeOnly", "test": "testImplementation"}


def maven_dependencies(pom: Path) -> set:
    root = ElementTree.parse(pom).getroot()
    properties = {child.tag.split("}")[1]: child.text
                  for child in root.find("m:properties", _NS) or []}

    def text(node, name: str, default: str = "") -> str:
        found = node.find(f"m:{name}", _NS)
        value = found.text.strip() if found is not None and found.text else default
        return re.sub(r"\$\{([^}]+)\}", lambda m: properties[m.group(1)], value)

    dependencies = {
        (_SCOPES[text(dep, "scope", "compile")], text(dep, "groupId"), text(dep, "artifactId"),
         text(dep, "version"))
        for dep in root.findall("m:dependencies/m:dependency", _NS)
    }
    processors = {
        ("annotationProcessor", text(path, "groupId"), text(path, "artifactId"),
         text(path, "version"))
        for path in root.findall(
            "m:build/m:plugins/m:plugin/m:configuration/m:annotationProcessorPaths/m:path", _NS)
    }
    return dependencies | processors


def gradle_dependencies(build: Path) -> set:
    block = re.search(r"^dependencies\s*\{(.*?)^\}", build.read_text(), re.S | re.M).group(1)
    found = set()
    for configuration, coordinates in re.findall(r"^\s*(\w+)\s+['\"]([^'\"]+)['\"]", block, re.M):
        group, artifact, version = coordinates.split(":")
        found.add((configuration, group, artifact, version))
    return found


def test_pom_and_gradle_declare_the_same_dependencies():
    maven = maven_dependencies(ROOT / "java" / "pom.xml")
    gradle = gradle_dependencies(ROOT / "build.gradle")
    assert len(maven) >= 5
    assert maven == gradle, f"only in pom.xml: {maven - gradle}; only in build.gradle: {gradle - maven}"


def test_beam_is_pinned_to_the_release_the_python_side_uses():
    beam = {version for _, group, _, version in maven_dependencies(ROOT / "java" / "pom.xml")
            if group == "org.apache.beam"}
    constraints = (ROOT / "constraints.txt").read_text()
    assert beam == {"2.62.0"} and "apache-beam==2.62.0" in constraints


def test_gradle_compiles_the_java_sources_of_the_maven_module():
    text = (ROOT / "build.gradle").read_text()
    assert "srcDirs = ['java/src/main/java']" in text
    assert "srcDirs = ['java/src/test/java']" in text
    assert (ROOT / "java" / "src" / "main" / "java" / "dev" / "liveinference" / "RunInference.java").exists()
