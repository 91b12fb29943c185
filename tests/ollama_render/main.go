// Renders a Modelfile TEMPLATE exactly as Ollama's server does (template/template.go): Go's
// text/template with missingkey=zero and the json function, over Ollama's data model.
// Input on stdin: {"template": "...", "messages": [{"role": ..., "content": ...}, ...]}.
// Output on stdout: the rendered prompt, nothing else.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Thinking  string `json:"thinking,omitempty"`
	Images    []any  `json:"images,omitempty"`
	ToolCalls []any  `json:"tool_calls,omitempty"`
}

type request struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
}

// collate is Ollama's: system messages joined for .System and kept in the list; consecutive
// messages of one role merged with a blank line.
func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		msg := msgs[i]
		if msg.Role == "system" {
			system = append(system, msg.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msg.Role {
			collated[len(collated)-1].Content += "\n\n" + msg.Content
		} else {
			collated = append(collated, &msg)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(3)
	}
	system, msgs := collate(req.Messages)
	vars := map[string]any{"System": system, "Messages": msgs, "Tools": nil, "Response": "",
		"Think": false, "ThinkLevel": "", "IsThinkSet": false}
	if err := tmpl.Execute(os.Stdout, vars); err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		os.Exit(4)
	}
}
